//! The terminal chat client behind `examples/cli-chat.rs`: reads commands and
//! text lines, prints messages, joins, leaves and typing as they arrive.

use im_client_sdk::{Client, ClientConfig, Credentials, Event, Events, MediaKind, Upload, v1};

#[path = "cli_contacts.rs"]
mod contacts;
#[path = "cli_messages.rs"]
mod messages;
use std::collections::HashMap;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

#[path = "cli_admin.rs"]
mod admin;

const HELP: &str = "commands: /register USER PASS | /login USER PASS | /rooms | /join ROOM_ID | /create TITLE \
| /group TITLE USER... | /dm USER | /users PREFIX | /conversations | /history | /leave \
| /file PATH | /files | /download FILE_ID PATH | /quit; on messages (MSG: the m-number shown): ";

enum Target {
    None,
    Conversation(u64),
    User(u64),
}

struct Cli<W> {
    config: ClientConfig,
    out: W,
    session: Option<(Client, Events)>,
    target: Target,
    names: HashMap<u64, String>,
    /// The conversation of each message shown, for the commands on messages.
    conversation_of: HashMap<u64, u64>,
}

/// Runs the client until `/quit` or end of input, connecting with
/// `config` (its URLs, and the roots it trusts for `wss://` and `grpcs://`).
pub async fn run<R, W>(input: R, out: W, config: ClientConfig) -> anyhow::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut cli = Cli {
        config,
        out,
        session: None,
        target: Target::None,
        names: HashMap::new(),
        conversation_of: HashMap::new(),
    };
    cli.say(&format!(
        "{HELP}{}; contacts: {}; anything else is sent to the current conversation",
        messages::HELP,
        contacts::HELP
    ))
    .await?;
    cli.say(admin::HELP).await?;
    let mut lines = input.lines();
    loop {
        let event = async {
            match cli.session.as_mut() {
                Some((_, events)) => events.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                if !cli.command(line.trim()).await? {
                    break;
                }
            }
            Some(event) = event => cli.show(event).await?,
        }
    }
    if let Some((client, _)) = &cli.session {
        client.close();
    }
    Ok(())
}

impl<W: AsyncWrite + Unpin> Cli<W> {
    async fn say(&mut self, line: &str) -> anyhow::Result<()> {
        self.out.write_all(line.as_bytes()).await?;
        self.out.write_all(b"\n").await?;
        self.out.flush().await?;
        Ok(())
    }

    fn client(&self) -> anyhow::Result<&Client> {
        self.session
            .as_ref()
            .map(|(c, _)| c)
            .ok_or_else(|| anyhow::anyhow!("not signed in: /register or /login first"))
    }

    async fn name(&mut self, user_id: u64) -> String {
        if user_id == 0 {
            return "system".into();
        }
        if let Some(n) = self.names.get(&user_id) {
            return n.clone();
        }
        let fetched = match self.client() {
            Ok(c) => c.users(&[user_id]).await.ok().and_then(|u| u.into_iter().next()),
            Err(_) => None,
        };
        let name = fetched.map_or_else(|| format!("user{user_id}"), |u| u.username);
        self.names.insert(user_id, name.clone());
        name
    }

    async fn user_id(&mut self, username: &str) -> anyhow::Result<u64> {
        let found = self.client()?.search_users(username, 20).await?;
        let user = found
            .into_iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
            .ok_or_else(|| anyhow::anyhow!("no user named {username}"))?;
        self.names.insert(user.id, user.username.clone());
        Ok(user.id)
    }

    /// Handles one input line; false to quit.
    async fn command(&mut self, line: &str) -> anyhow::Result<bool> {
        if line.is_empty() {
            return Ok(true);
        }
        match self.try_command(line).await {
            Ok(go_on) => Ok(go_on),
            Err(e) => {
                self.say(&format!("! {e}")).await?;
                Ok(true)
            }
        }
    }

    async fn try_command(&mut self, line: &str) -> anyhow::Result<bool> {
        let mut words = line.split_whitespace();
        let cmd = if line.starts_with('/') {
            words.next().unwrap_or("")
        } else {
            ""
        };
        let rest: Vec<&str> = words.collect();
        match cmd {
            "/quit" => return Ok(false),
            "/register" | "/login" => {
                let [user, pass] = rest[..] else {
                    anyhow::bail!("usage: {cmd} USER PASS");
                };
                let credentials = if cmd == "/register" {
                    Credentials::Register {
                        username: user.into(),
                        password: pass.into(),
                        display_name: String::new(),
                    }
                } else {
                    Credentials::Login {
                        username: user.into(),
                        password: pass.into(),
                    }
                };
                if let Some((old, _)) = self.session.take() {
                    old.close();
                }
                let (client, events) = Client::connect(self.config.clone(), credentials).await?;
                let me = client.user();
                self.names.insert(me.id, me.username.clone());
                self.session = Some((client, events));
                self.say(&format!("signed in as {} (id {})", me.username, me.id))
                    .await?;
            }
            "/rooms" => {
                let rooms = self.client()?.list_rooms(50).await?;
                if rooms.is_empty() {
                    self.say("no rooms yet: /create TITLE").await?;
                }
                for r in rooms {
                    let c = r.conversation.unwrap_or_default();
                    self.say(&format!("  #{} {} ({} members)", c.id, c.title, r.member_count))
                        .await?;
                }
            }
            "/join" => {
                let id: u64 = rest
                    .first()
                    .and_then(|s| s.trim_start_matches('#').parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("usage: /join ROOM_ID"))?;
                let c = self.client()?.join(id).await?;
                if c.join_requested {
                    self.say(&format!("asked to join #{} {}: an admin decides", c.id, c.title))
                        .await?;
                } else {
                    self.target = Target::Conversation(c.id);
                    self.say(&format!("joined #{} {}", c.id, c.title)).await?;
                }
            }
            "/create" => {
                anyhow::ensure!(!rest.is_empty(), "usage: /create TITLE");
                let c = self.client()?.create_room(&rest.join(" "), false).await?;
                self.target = Target::Conversation(c.id);
                self.say(&format!("created room #{} {}", c.id, c.title)).await?;
            }
            "/group" => {
                let (title, users) = rest
                    .split_first()
                    .ok_or_else(|| anyhow::anyhow!("usage: /group TITLE USER..."))?;
                let mut ids = Vec::new();
                for u in users {
                    ids.push(self.user_id(u).await?);
                }
                let c = self.client()?.create_group(title, &ids).await?;
                self.target = Target::Conversation(c.id);
                self.say(&format!(
                    "created group #{} {} ({} members)",
                    c.id, c.title, c.member_count
                ))
                .await?;
            }
            "/dm" => {
                let user = rest.first().ok_or_else(|| anyhow::anyhow!("usage: /dm USER"))?;
                let id = self.user_id(user).await?;
                self.target = Target::User(id);
                self.say(&format!("talking to {user}")).await?;
            }
            "/users" => {
                let users = self
                    .client()?
                    .search_users(rest.first().copied().unwrap_or(""), 50)
                    .await?;
                for u in users {
                    self.say(&format!("  {} ({}) id {}", u.username, u.display_name, u.id))
                        .await?;
                }
            }
            "/conversations" => {
                let list = self.client()?.conversations().await?;
                for c in list {
                    self.say(&format!(
                        "  #{} {} unread {}",
                        c.id,
                        if c.title.is_empty() { "(direct)" } else { &c.title },
                        c.unread_count
                    ))
                    .await?;
                }
            }
            "/history" => {
                let Target::Conversation(id) = self.target else {
                    anyhow::bail!("no current conversation");
                };
                let page = self.client()?.history(id, 0, 20).await?;
                for m in page.messages {
                    let line = self.render(&m).await;
                    self.say(&line).await?;
                }
            }
            "/leave" => {
                let Target::Conversation(id) = self.target else {
                    anyhow::bail!("no current conversation");
                };
                self.client()?.leave(id).await?;
                self.target = Target::None;
                self.say(&format!("left #{id}")).await?;
            }
            "/file" => {
                anyhow::ensure!(!rest.is_empty(), "usage: /file PATH");
                let target = self.send_target()?;
                let path = rest.join(" ");
                let info = self
                    .client()?
                    .files()?
                    .upload_path(&path, Upload::default())
                    .await?;
                let kind = match info.mime_type.split('/').next() {
                    Some("image") => MediaKind::Image,
                    Some("audio") => MediaKind::Audio,
                    Some("video") => MediaKind::Video,
                    _ => MediaKind::File,
                };
                let ack = self.client()?.send_file(target, kind, &info.id, "").await?;
                self.target = Target::Conversation(ack.conversation_id);
                self.say(&format!(
                    "sent {} ({} bytes, {}) as file {}",
                    info.name, info.size, info.mime_type, info.id
                ))
                .await?;
            }
            "/files" => {
                let files = self.client()?.files()?.received(50).await?;
                if files.is_empty() {
                    self.say("no files received yet").await?;
                }
                for f in files {
                    let from = self.name(f.uploader_id).await;
                    self.say(&format!(
                        "  {} {} ({} bytes, {}) from {from} in #{}",
                        f.id,
                        f.name,
                        f.size,
                        f.mime_type,
                        f.conversation_id.unwrap_or_default()
                    ))
                    .await?;
                }
            }
            "/download" => {
                let [id, path @ ..] = &rest[..] else {
                    anyhow::bail!("usage: /download FILE_ID PATH");
                };
                anyhow::ensure!(!path.is_empty(), "usage: /download FILE_ID PATH");
                let path = path.join(" ");
                let info = self.client()?.files()?.download_to_path(id, &path, None).await?;
                self.say(&format!(
                    "downloaded {} bytes to {path} (sha256 {})",
                    info.size, info.sha256
                ))
                .await?;
            }
            "/reply" | "/edit" | "/recall" | "/react" | "/unreact" | "/delete" | "/search" => {
                self.message_command(cmd, &rest).await?;
            }
            "/members" | "/invite" | "/invitations" | "/accept" | "/kick" | "/ban" | "/unban" | "/mute" => {
                self.admin_command(cmd, &rest).await?;
            }
            cmd if contacts::is_contact_command(cmd) => self.contact_command(cmd, &rest).await?,
            "" => {
                let target = self.send_target()?;
                let ack = self.client()?.send(target, v1::Content::text(line)).await?;
                self.target = Target::Conversation(ack.conversation_id);
            }
            other => anyhow::bail!(
                "unknown command {other}; {HELP}{}; {}",
                messages::HELP,
                admin::HELP
            ),
        }
        Ok(true)
    }

    /// Where a message typed now goes.
    fn send_target(&self) -> anyhow::Result<v1::send_message::Target> {
        Ok(match self.target {
            Target::Conversation(id) => v1::send_message::Target::ConversationId(id),
            Target::User(id) => v1::send_message::Target::ToUserId(id),
            Target::None => anyhow::bail!("no current conversation: /join, /create, /group or /dm first"),
        })
    }

    async fn render(&mut self, m: &v1::Message) -> String {
        self.conversation_of.insert(m.id, m.conversation_id);
        if m.deleted {
            // Deleted for us, or from a user we block.
            return format!("[#{}] (m{}) (deleted)", m.conversation_id, m.id);
        }
        let content = m.content.clone().unwrap_or_default();
        match content.kind {
            Some(v1::content::Kind::Text(t)) => {
                let who = self.name(m.sender_id).await;
                format!("[#{}] (m{}) {who}: {}", m.conversation_id, m.id, t.body)
            }
            Some(v1::content::Kind::System(s)) => {
                let actor = self.name(s.actor_id).await;
                let mut users = Vec::new();
                for u in &s.user_ids {
                    users.push(self.name(*u).await);
                }
                format!(
                    "[#{}] * {}",
                    m.conversation_id,
                    admin::describe(&s, &actor, &users.join(", "))
                )
            }
            Some(
                v1::content::Kind::Image(f)
                | v1::content::Kind::Audio(f)
                | v1::content::Kind::Video(f)
                | v1::content::Kind::Voice(f)
                | v1::content::Kind::File(f),
            ) => {
                let who = self.name(m.sender_id).await;
                let caption = if f.caption.is_empty() {
                    String::new()
                } else {
                    format!(": {}", f.caption)
                };
                format!(
                    "[#{}] {who} sent {} ({} bytes, {}), /download {} PATH{caption}",
                    m.conversation_id, f.name, f.size, f.mime_type, f.file_id
                )
            }
            _ => format!(
                "[#{}] {} sent a non-text message",
                m.conversation_id,
                self.name(m.sender_id).await
            ),
        }
    }

    async fn show(&mut self, event: Event) -> anyhow::Result<()> {
        let line = match event {
            Event::Message(m) => self.render(&m).await,
            Event::MessageUpdated(m) => self.render_update(&m).await,
            Event::Typing(t) if t.typing => format!(
                "[#{}] {} is typing...",
                t.conversation_id,
                self.name(t.user_id).await
            ),
            Event::Presence(p) => format!(
                "* {} is {}",
                self.name(p.user_id).await,
                if p.online { "online" } else { "offline" }
            ),
            Event::Disconnected { reason } => format!("* disconnected ({reason}), reconnecting..."),
            Event::Closing { reason } => format!("* server: {reason}"),
            Event::AuthFailed(e) => format!("! {e}"),
            Event::Invitation(_) | Event::Notice(_) | Event::ConversationRemoved(_) => {
                self.admin_event(event).await
            }
            Event::Contact(c) => self.render_contact(&c).await,
            _ => return Ok(()),
        };
        self.say(&line).await
    }
}
