//! The standalone edge's room service for the control API ([`RoomService`]): each call is a
//! request to the in-process router ([`crate::local_router`]), which answers from its [`Rooms`]
//! and hands the effects (room events, removals) to the registry like those of a command. What the
//! API makes of the answers is [`AskingRoomService`]'s, shared with the cluster's routers.
//!
//! [`Rooms`]: switchboard_rooms::Rooms

use std::sync::Arc;

use switchboard_api::service::{AskingRoomService, BoxFuture, RoomAsk, RoomService, ServiceError};
use switchboard_proto::RoomKeyer;
use switchboard_proto::control::{RoomReply, RoomRequest};
use tokio::sync::{mpsc, oneshot};

use crate::bus::LocalRequest;

/// The way to the in-process router, which owns every room (a listing is one request); build the
/// room service with [`LocalRoomService::shared`] and hand it to the API server as an
/// `Arc<dyn RoomService>`.
#[derive(Debug, Clone)]
pub struct LocalRoomService {
    /// Weak: the router ends when the edge's last connection and task let go of it; an API
    /// server still holding this service must not keep it alive.
    router: mpsc::WeakSender<LocalRequest>,
}

impl LocalRoomService {
    /// A room service asking the router fed by `router`, with the edge's room keyer (the same one
    /// its connections hash room names with).
    pub fn shared(router: &mpsc::Sender<LocalRequest>, keyer: RoomKeyer) -> Arc<dyn RoomService> {
        let local = LocalRoomService {
            router: router.downgrade(),
        };
        Arc::new(AskingRoomService::new(local, keyer))
    }
}

impl RoomAsk for LocalRoomService {
    fn ask(&self, request: RoomRequest) -> BoxFuture<'_, Result<RoomReply, ServiceError>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            let router = self.router.upgrade().ok_or(ServiceError::Unavailable)?;
            router
                .send(LocalRequest::Rooms(request, tx))
                .await
                .map_err(|_| ServiceError::Unavailable)?;
            rx.await.map_err(|_| ServiceError::Unavailable)
        })
    }
}
