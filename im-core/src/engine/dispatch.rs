//! One request of an authenticated session, to the engine method behind it.

use super::{Caller, Engine};
use crate::error::{Error, Result};
use im_protocol::v1;
use im_protocol::v1::{client_frame::Body, response::Result as Reply};

impl Engine {
    /// Runs one request of an authenticated session. Session-level requests
    /// (`Hello`, `Register`, `Login`, `Logout`) are handled by the
    /// connection (`im_core::connection::Connection`).
    pub async fn handle(&self, caller: Caller, body: Body) -> Result<Reply> {
        Ok(match body {
            Body::UpdateProfile(r) => Reply::User(self.update_profile(caller, r).await?),
            Body::GetUsers(r) => Reply::Users(v1::Users {
                users: self.get_users(&r.user_ids).await?,
            }),
            Body::SearchUsers(r) => Reply::Users(v1::Users {
                users: self.search_users(&r.prefix, r.limit).await?,
            }),
            Body::CreateGroup(r) => {
                Reply::Conversation(self.create_group(caller, &r.title, &r.member_ids).await?)
            }
            Body::CreateRoom(r) => {
                Reply::Conversation(self.create_room(caller, &r.title, r.ephemeral).await?)
            }
            Body::ListRooms(r) => Reply::Rooms(v1::Rooms {
                rooms: self.list_rooms(r.limit).await?,
            }),
            Body::Join(r) => Reply::Conversation(self.join(caller, r.conversation_id).await?),
            Body::Leave(r) => {
                self.leave(caller, r.conversation_id).await?;
                Reply::Ok(v1::Empty {})
            }
            Body::AddMembers(r) => {
                Reply::Conversation(self.add_members(caller, r.conversation_id, &r.user_ids).await?)
            }
            Body::Rename(r) => Reply::Conversation(self.rename(caller, r.conversation_id, &r.title).await?),
            Body::GetConversation(r) => {
                Reply::Conversation(self.get_conversation(caller, r.conversation_id).await?)
            }
            Body::ListConversations(r) => {
                let (conversations, has_more) = self.list_conversations(caller, r.limit).await?;
                Reply::Conversations(v1::Conversations {
                    conversations,
                    has_more,
                })
            }
            Body::Send(r) => Reply::Ack(self.send_message(caller, r).await?),
            Body::GetHistory(r) => Reply::Messages(self.history(caller, r).await?),
            Body::Sync(r) => Reply::Sync(self.sync_page(caller, &r).await?),
            Body::GetChanges(r) => Reply::Changes(self.changes(caller, r).await?),
            Body::MarkRead(r) => {
                Reply::Cursor(self.mark(caller, r.conversation_id, Some(r.seq), None).await?)
            }
            Body::MarkDelivered(r) => {
                Reply::Cursor(self.mark(caller, r.conversation_id, None, Some(r.seq)).await?)
            }
            Body::Typing(r) => {
                self.typing(caller, r.conversation_id, r.typing).await?;
                Reply::Ok(v1::Empty {})
            }
            Body::GetPresence(r) => Reply::Presence(v1::PresenceList {
                presence: self.presence(caller, &r.user_ids).await?,
            }),
            Body::CallInvite(r) => Reply::Call(self.call_invite(caller, r).await?),
            Body::CallUpdate(r) => match self.call_update(caller, r).await? {
                Some(call) => Reply::Call(call),
                None => Reply::Ok(v1::Empty {}),
            },
            Body::CallSignal(r) => {
                self.call_signal(caller, r).await?;
                Reply::Ok(v1::Empty {})
            }
            Body::GetIceServers(_) => Reply::IceServers(self.ice_servers(&caller)),
            Body::UpdateConversationSettings(r) => {
                Reply::Conversation(self.update_conversation_settings(caller, r).await?)
            }
            Body::EditMessage(r) => Reply::Message(self.edit_message(caller, r).await?),
            Body::RecallMessage(r) => Reply::Message(self.recall_message(caller, r).await?),
            Body::React(r) => Reply::Message(self.react(caller, r).await?),
            Body::DeleteMessages(r) => Reply::Deleted(self.delete_messages(caller, r).await?),
            Body::GetEditHistory(r) => Reply::EditHistory(self.edit_history(caller, r).await?),
            Body::Forward(r) => Reply::Acks(self.forward_messages(caller, r).await?),
            Body::PinMessage(r) => Reply::Message(self.pin_message(caller, r).await?),
            Body::ListPinned(r) => Reply::Messages(self.list_pinned(caller, r).await?),
            Body::GetThread(r) => Reply::Thread(self.get_thread(caller, r).await?),
            Body::MarkThreadRead(r) => Reply::Thread(v1::Thread {
                summary: Some(self.mark_thread_read(caller, r).await?),
                ..Default::default()
            }),
            Body::ListThreads(r) => Reply::Threads(self.list_threads(caller, r).await?),
            Body::SearchMessages(r) => Reply::Messages(self.search_messages(caller, r).await?),
            Body::SetMessageTtl(r) => Reply::Conversation(self.set_message_ttl(caller, r).await?),
            Body::InviteMembers(r) => Reply::Conversation(self.invite_members(caller, r).await?),
            Body::ListInvitations(r) => Reply::Invitations(self.list_invitations(caller, r).await?),
            Body::RespondInvitation(r) => match self.respond_invitation(caller, r).await? {
                Some(conversation) => Reply::Conversation(conversation),
                None => Reply::Ok(v1::Empty {}),
            },
            Body::SetJoinPolicy(r) => Reply::Conversation(self.set_join_policy(caller, r).await?),
            Body::ListJoinRequests(r) => Reply::JoinRequests(self.list_join_requests(caller, r).await?),
            Body::DecideJoinRequest(r) => Reply::Conversation(self.decide_join_request(caller, r).await?),
            Body::KickMember(r) => Reply::Conversation(self.kick_member(caller, r).await?),
            Body::BanMember(r) => Reply::Conversation(self.ban_member(caller, r).await?),
            Body::UnbanMember(r) => Reply::Conversation(self.unban_member(caller, r).await?),
            Body::ListBans(r) => Reply::Bans(self.list_bans(caller, r).await?),
            Body::MuteMember(r) => Reply::Conversation(self.mute_member(caller, r).await?),
            Body::MuteGroup(r) => Reply::Conversation(self.mute_group(caller, r).await?),
            Body::TransferOwnership(r) => Reply::Conversation(self.transfer_ownership(caller, r).await?),
            Body::SetRole(r) => Reply::Conversation(self.set_role(caller, r).await?),
            Body::DissolveGroup(r) => {
                self.dissolve_group(caller, r).await?;
                Reply::Ok(v1::Empty {})
            }
            Body::ListMembers(r) => Reply::Members(self.list_members(caller, r).await?),
            Body::SendFriendRequest(r) => Reply::FriendRequest(self.send_friend_request(caller, r).await?),
            Body::RespondFriendRequest(r) => {
                Reply::FriendRequest(self.respond_friend_request(caller, r).await?)
            }
            Body::RemoveFriend(r) => {
                self.remove_friend(caller, r.user_id).await?;
                Reply::Ok(v1::Empty {})
            }
            Body::ListFriends(_) => Reply::Friends(self.list_friends(caller).await?),
            Body::ListFriendRequests(_) => Reply::FriendRequests(self.list_friend_requests(caller).await?),
            Body::BlockUser(r) => {
                self.block_user(caller, r.user_id).await?;
                Reply::Ok(v1::Empty {})
            }
            Body::UnblockUser(r) => {
                self.unblock_user(caller, r.user_id).await?;
                Reply::Ok(v1::Empty {})
            }
            Body::ListBlocked(_) => Reply::Blocked(self.list_blocked(caller).await?),
            Body::Ping(_) => Reply::Pong(v1::Pong {
                server_time: self.now_ms(),
            }),
            Body::Hello(_) | Body::Register(_) | Body::Login(_) | Body::Logout(_) => {
                return Err(Error::InvalidArgument(
                    "session request outside a connection".into(),
                ));
            }
        })
    }
}
