//! `im.v1.Api`: unary calls for clients that keep no session open. Each
//! authenticates its bearer token and runs the same engine call as the
//! frame of the same name on a session.

use super::{admit, caller, status_of};
use crate::shared::Shared;
use im_core::Error;
use im_protocol::grpc::api_server;
use im_protocol::v1::{self, client_frame::Body, response::Result as Reply};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The `Api` service.
pub(super) struct ApiService {
    pub(super) shared: Arc<Shared>,
}

impl ApiService {
    /// Runs `body` as the caller and picks the expected reply.
    async fn call<T, R>(
        &self,
        request: Request<T>,
        body: impl FnOnce(T) -> Body,
        pick: impl FnOnce(Reply) -> Option<R>,
    ) -> Result<Response<R>, Status> {
        let caller = caller(&self.shared, &request).await?;
        let reply = self
            .shared
            .engine
            .handle(caller, body(request.into_inner()))
            .await
            .map_err(|e| status_of(&e))?;
        pick(reply)
            .map(Response::new)
            .ok_or_else(|| status_of(&Error::Internal("unexpected reply".into())))
    }
}

#[tonic::async_trait]
impl api_server::Api for ApiService {
    async fn register(&self, request: Request<v1::Register>) -> Result<Response<v1::AuthOk>, Status> {
        admit(&self.shared, &request)?;
        let r = request.into_inner();
        let issued = self
            .shared
            .engine
            .register(&r.username, &r.password, &r.display_name)
            .await
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(issued.to_wire()))
    }

    async fn login(&self, request: Request<v1::Login>) -> Result<Response<v1::AuthOk>, Status> {
        admit(&self.shared, &request)?;
        let r = request.into_inner();
        let issued = self
            .shared
            .engine
            .login(&r.username, &r.password)
            .await
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(issued.to_wire()))
    }

    async fn get_history(&self, request: Request<v1::GetHistory>) -> Result<Response<v1::Messages>, Status> {
        self.call(request, Body::GetHistory, |r| match r {
            Reply::Messages(m) => Some(m),
            _ => None,
        })
        .await
    }

    async fn list_conversations(
        &self,
        request: Request<v1::ListConversations>,
    ) -> Result<Response<v1::Conversations>, Status> {
        self.call(request, Body::ListConversations, |r| match r {
            Reply::Conversations(c) => Some(c),
            _ => None,
        })
        .await
    }

    async fn list_rooms(&self, request: Request<v1::ListRooms>) -> Result<Response<v1::Rooms>, Status> {
        self.call(request, Body::ListRooms, |r| match r {
            Reply::Rooms(rooms) => Some(rooms),
            _ => None,
        })
        .await
    }

    async fn get_conversation(
        &self,
        request: Request<v1::GetConversation>,
    ) -> Result<Response<v1::Conversation>, Status> {
        self.call(request, Body::GetConversation, |r| match r {
            Reply::Conversation(c) => Some(c),
            _ => None,
        })
        .await
    }
}
