//! The terminal client's contact commands: friend requests, friends, blocks;
//! and how contact events are shown.

use super::Cli;
use im_client_sdk::v1;
use tokio::io::AsyncWrite;

pub(super) const HELP: &str = "/friend USER [NOTE] (asks, or accepts their request) | /unfriend USER \
| /decline USER | /friends | /block USER | /unblock USER | /blocked";

/// Whether `cmd` is one of ours.
pub(super) fn is_contact_command(cmd: &str) -> bool {
    matches!(
        cmd,
        "/friend" | "/unfriend" | "/decline" | "/friends" | "/block" | "/unblock" | "/blocked"
    )
}

impl<W: AsyncWrite + Unpin> Cli<W> {
    /// Runs a contact command (see [`HELP`]).
    pub(super) async fn contact_command(&mut self, cmd: &str, rest: &[&str]) -> anyhow::Result<()> {
        let client = self.client()?.clone();
        match cmd {
            "/friends" => {
                let friends = client.friends().await?;
                let requests = client.friend_requests().await?;
                if friends.is_empty() {
                    self.say("no friends yet").await?;
                }
                for f in friends {
                    let name = f.user.map_or_else(String::new, |u| u.username);
                    self.say(&format!("  friend {name}")).await?;
                }
                let pending = |r: &v1::FriendRequest| r.state() == v1::FriendRequestState::Pending;
                for r in requests.incoming.iter().filter(|r| pending(r)) {
                    let name = self.name(r.from_user_id).await;
                    self.say(&format!(
                        "  {name} asks to be friends: {} (/friend {name})",
                        r.message
                    ))
                    .await?;
                }
                for r in requests.outgoing.iter().filter(|r| pending(r)) {
                    let name = self.name(r.to_user_id).await;
                    self.say(&format!("  waiting for {name} to answer")).await?;
                }
                return Ok(());
            }
            "/blocked" => {
                let blocked = client.blocked().await?;
                if blocked.is_empty() {
                    self.say("nobody blocked").await?;
                }
                for b in blocked {
                    let name = b.user.map_or_else(String::new, |u| u.username);
                    self.say(&format!("  blocked {name}")).await?;
                }
                return Ok(());
            }
            _ => {}
        }
        let (user, note) = match rest.split_first() {
            Some((user, note)) => (*user, note.join(" ")),
            None => anyhow::bail!("usage: {cmd} USER"),
        };
        let id = self.user_id(user).await?;
        let done = match cmd {
            "/friend" => match client.send_friend_request(id, &note).await?.state() {
                v1::FriendRequestState::Accepted => format!("you and {user} are friends"),
                _ => format!("friend request sent to {user}"),
            },
            "/unfriend" => {
                client.remove_friend(id).await?;
                format!("{user} is no longer a friend (or your request is withdrawn)")
            }
            "/decline" => {
                client.decline_friend_request(id).await?;
                format!("declined {user}'s request")
            }
            "/block" => {
                client.block(id).await?;
                format!("blocked {user}")
            }
            "/unblock" => {
                client.unblock(id).await?;
                format!("unblocked {user}")
            }
            _ => anyhow::bail!("unknown command {cmd}"),
        };
        self.say(&done).await
    }

    /// A contact event as a line.
    pub(super) async fn render_contact(&mut self, c: &v1::ContactEvent) -> String {
        let from = self.name(c.from_user_id).await;
        let to = self.name(c.to_user_id).await;
        match c.kind() {
            v1::ContactEventKind::Request => {
                let note = c.request.as_ref().map_or("", |r| r.message.as_str());
                format!("* {from} asks {to} to be friends: {note} (/friend {from} to accept)")
            }
            v1::ContactEventKind::Accepted => format!("* {from} and {to} are friends"),
            v1::ContactEventKind::Declined => format!("* {from} declined {to}'s friend request"),
            v1::ContactEventKind::Removed => format!("* {from} and {to} are no longer friends"),
            v1::ContactEventKind::Cancelled => format!("* {from} withdrew their friend request to {to}"),
            v1::ContactEventKind::Blocked => format!("* you blocked {to}"),
            v1::ContactEventKind::Unblocked => format!("* you unblocked {to}"),
            v1::ContactEventKind::Unspecified => "* contacts changed".into(),
        }
    }
}
