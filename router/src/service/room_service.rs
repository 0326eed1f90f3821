//! The cluster's room service for the control API ([`RoomService`]), over NATS request/reply:
//! requests about one room go to the owner of its slot ([`subject::rooms_slot`]); a tenant's
//! listing asks every slot at once (scatter-gather) and is complete only when every slot answered.
//! A slot without a serving router (a failover) is asked again until a bounded deadline, then the
//! call fails as `Unavailable` (the API caller may retry). Rooms are named by their keys on the
//! bus; names come back only in the listing's reply, to the asking tenant. What the API makes of
//! the answers is [`AskingRoomService`]'s, shared with the standalone edge.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use switchboard_api::service::{AskingRoomService, BoxFuture, RoomAsk, RoomService, ServiceError};
use switchboard_proto::control::{RoomReply, RoomRequest};
use switchboard_proto::{RoomKeyer, subject};
use tokio::time::{Instant, sleep, timeout};

/// Longest a call waits in all, failovers included: about the cluster's failover time (lease
/// lifetime plus resync) with room to spare.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// Longest wait for one reply before asking again.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause before asking a slot without a serving router again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The way to the rooms over NATS, slot by slot; any process connected to the cluster's NATS with
/// the edges' room-key secret can build the room service with [`ClusterRoomService::shared`] (the
/// routers do, for their control API).
#[derive(Debug, Clone)]
pub struct ClusterRoomService {
    client: async_nats::Client,
    slots: u32,
    deadline: Duration,
}

impl ClusterRoomService {
    /// A room service asking the routers over `client`; `keyer` must be the edges' (their
    /// `--room-key-secret`) and `slots` the cluster's `--slots`.
    pub fn shared(
        client: async_nats::Client,
        keyer: RoomKeyer,
        slots: u32,
    ) -> Arc<dyn RoomService> {
        let cluster = ClusterRoomService {
            client,
            slots,
            deadline: DEFAULT_DEADLINE,
        };
        Arc::new(AskingRoomService::new(cluster, keyer))
    }

    /// Asks the owner of `slot`, again while it has none, until the deadline.
    async fn ask_slot(&self, slot: u32, request: &RoomRequest) -> Result<RoomReply, ServiceError> {
        let payload: bytes::Bytes = serde_json::to_vec(request)
            .map_err(|_| ServiceError::Unavailable)?
            .into();
        let deadline = Instant::now() + self.deadline;
        loop {
            let reply = timeout(
                ATTEMPT_TIMEOUT,
                self.client
                    .request(subject::rooms_slot(slot), payload.clone()),
            )
            .await;
            if let Ok(Ok(message)) = reply {
                match serde_json::from_slice::<RoomReply>(&message.payload) {
                    Ok(RoomReply::NotServing) | Err(_) => {}
                    Ok(reply) => return Ok(reply),
                }
            }
            // No responders, a timeout or "not serving": the slot's owner is changing.
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(ServiceError::Unavailable);
            }
            sleep(RETRY_PAUSE).await;
        }
    }
}

impl RoomAsk for ClusterRoomService {
    fn ask(&self, request: RoomRequest) -> BoxFuture<'_, Result<RoomReply, ServiceError>> {
        Box::pin(async move {
            let slot = request
                .room()
                .ok_or(ServiceError::Unavailable)?
                .slot(self.slots);
            self.ask_slot(slot, &request).await
        })
    }

    fn ask_all(&self, request: RoomRequest) -> BoxFuture<'_, Vec<Result<RoomReply, ServiceError>>> {
        Box::pin(async move {
            let request = &request;
            join_all((0..self.slots).map(|slot| self.ask_slot(slot, request))).await
        })
    }
}
