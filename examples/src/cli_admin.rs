//! The terminal client's group administration commands: members,
//! invitations, kick, ban, mute; and the administration notices in words.

use super::{Cli, Target};
use im_client_sdk::{Event, v1};
use tokio::io::AsyncWrite;

/// The administration commands, for the help line.
pub(super) const HELP: &str = "in a group or room: /members | /invite USER... | /invitations | /accept ID \
| /kick USER | /ban USER | /unban USER | /mute USER [MINUTES, 0 lifts; none: until lifted]";

impl<W: AsyncWrite + Unpin> Cli<W> {
    /// Runs one administration command (`cmd` is one of those in [`HELP`]).
    pub(super) async fn admin_command(&mut self, cmd: &str, rest: &[&str]) -> anyhow::Result<()> {
        match cmd {
            "/members" => {
                let id = self.current()?;
                let (members, more) = self.client()?.members_page(id, 0, 50).await?;
                for m in members {
                    let role = v1::Role::try_from(m.role).unwrap_or_default().as_str_name();
                    let muted = if m.send_muted_until > 0 { ", muted" } else { "" };
                    let name = self.name(m.user_id).await;
                    self.say(&format!("  {name} ({role}{muted})")).await?;
                }
                if more {
                    self.say("  ...").await?;
                }
            }
            "/invite" => {
                anyhow::ensure!(!rest.is_empty(), "usage: /invite USER...");
                let id = self.current()?;
                let mut ids = Vec::new();
                for u in rest {
                    ids.push(self.user_id(u).await?);
                }
                self.client()?.invite_members(id, &ids).await?;
            }
            "/invitations" => {
                for i in self.client()?.invitations().await? {
                    let c = i.conversation.unwrap_or_default();
                    let by = self.name(i.invited_by).await;
                    self.say(&format!("  #{} {} from {by}: /accept {}", c.id, c.title, c.id))
                        .await?;
                }
            }
            "/accept" => {
                let id: u64 = rest
                    .first()
                    .and_then(|s| s.trim_start_matches('#').parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("usage: /accept ID"))?;
                let c = self.client()?.accept_invitation(id).await?;
                self.target = Target::Conversation(c.id);
                self.say(&format!("joined #{} {}", c.id, c.title)).await?;
            }
            "/kick" | "/ban" | "/unban" | "/mute" => {
                let user = rest.first().ok_or_else(|| anyhow::anyhow!("usage: {cmd} USER"))?;
                let id = self.current()?;
                let user_id = self.user_id(user).await?;
                let client = self.client()?;
                match cmd {
                    "/kick" => client.kick(id, user_id).await?,
                    "/ban" => client.ban(id, user_id).await?,
                    "/unban" => client.unban(id, user_id).await?,
                    _ => {
                        let until = match rest.get(1) {
                            None => im_client_sdk::MUTED_UNTIL_LIFTED,
                            Some(m) => match m.parse::<i64>()? {
                                0 => 0,
                                minutes => now_ms() + minutes.max(1) * 60_000,
                            },
                        };
                        client.mute_member(id, user_id, until).await?
                    }
                };
            }
            _ => anyhow::bail!("not an administration command: {cmd}"),
        }
        Ok(())
    }

    /// The current conversation, for commands about it.
    fn current(&self) -> anyhow::Result<u64> {
        match self.target {
            Target::Conversation(id) => Ok(id),
            _ => anyhow::bail!("no current group or room: /join or /group first"),
        }
    }

    /// An invitation, a notice, or a conversation we left, in words.
    pub(super) async fn admin_event(&mut self, event: Event) -> String {
        match event {
            Event::Invitation(i) => {
                let c = i.conversation.unwrap_or_default();
                let by = self.name(i.invited_by).await;
                format!("* {by} invited you to #{} {}: /accept {}", c.id, c.title, c.id)
            }
            Event::Notice(n) => {
                let notice = n.notice.unwrap_or_default();
                let actor = self.name(notice.actor_id).await;
                format!("[#{}] * {}", n.conversation_id, describe(&notice, &actor, "you"))
            }
            Event::ConversationRemoved(id) => format!("* you are no longer in #{id}"),
            _ => String::new(),
        }
    }
}

/// A system notice in words; `actor` and `users` are already names.
pub(super) fn describe(s: &v1::SystemNotice, actor: &str, users: &str) -> String {
    use v1::SystemKind as K;
    match K::try_from(s.kind).unwrap_or_default() {
        K::Created => format!("{actor} created {}", s.title),
        K::Joined => format!("{users} joined"),
        K::Left => format!("{users} left"),
        K::Added => format!("{actor} added {users}"),
        K::Renamed => format!("{actor} renamed it to {}", s.title),
        K::MessageTtl if s.ttl_ms == 0 => format!("{actor} turned disappearing messages off"),
        K::MessageTtl => format!("{actor} made messages disappear after {} s", s.ttl_ms / 1000),
        K::Invited => format!("{actor} invited {users}"),
        K::InvitationDeclined => format!("{actor} declined the invitation"),
        K::JoinRequested => format!("{actor} asked to join"),
        K::JoinApproved => format!("{actor} let {users} in"),
        K::JoinRefused => format!("{actor} refused the join request of {users}"),
        K::Removed => format!("{actor} removed {users}"),
        K::Banned => format!("{actor} banned {users}"),
        K::Unbanned => format!("{actor} lifted the ban of {users}"),
        K::MemberMuted if s.until == i64::MAX => format!("{actor} muted {users}"),
        K::MemberMuted => format!("{actor} muted {users} for a while"),
        K::MemberUnmuted => format!("{actor} unmuted {users}"),
        K::GroupMuted => format!("{actor} muted the group: only admins can send"),
        K::GroupUnmuted => format!("{actor} unmuted the group"),
        K::JoinPolicyChanged => format!(
            "{actor} set joining to {}",
            v1::JoinPolicy::try_from(s.join_policy)
                .unwrap_or_default()
                .as_str_name()
        ),
        K::RoleChanged => format!(
            "{actor} made {users} {}",
            v1::Role::try_from(s.role).unwrap_or_default().as_str_name()
        ),
        K::OwnershipTransferred => format!("{actor} made {users} the owner"),
        K::Dissolved => format!("{actor} dissolved the group"),
        K::Unspecified => "?".into(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
