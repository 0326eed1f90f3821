//! Where the engine looks a tenant's [`WebhookSettings`] up. The settings themselves live with the
//! tenant (`switchboard_tenants::webhook`), so the tenants file and the API check them alike.

use switchboard_proto::TenantId;

pub use switchboard_tenants::webhook::{
    Endpoint, MIN_SECRET_BYTES, SettingsError, WebhookSettings,
};

/// Where the engine finds a tenant's webhook. Implemented over the tenant registry by the process
/// that runs the engine; `None` means the tenant has no webhook (its events are not queued).
pub trait WebhookDirectory: Send + Sync + 'static {
    /// The tenant's current settings.
    fn webhook(&self, tenant: &TenantId) -> Option<WebhookSettings>;
}

impl<F> WebhookDirectory for F
where
    F: Fn(&TenantId) -> Option<WebhookSettings> + Send + Sync + 'static,
{
    fn webhook(&self, tenant: &TenantId) -> Option<WebhookSettings> {
        self(tenant)
    }
}
