// gRPC-only cases, included by `tests/e2e.rs` in its `grpc` module (which
// defines `BACKEND`): the unary `Api` calls, their status codes, rate limit
// and reflection, the stream's heartbeat and idle time-out, and shutdown.

mod grpc_only {
    use super::BACKEND;
    use crate::support::grpc::authorized;
    use crate::support::*;
    use im_client_sdk::im_protocol::grpc::{ERROR_CODE_METADATA, api_client::ApiClient};
    use im_client_sdk::{Event, v1};
    use std::time::Duration;
    use tonic::transport::Channel;

    async fn api(server: &TestServer) -> ApiClient<Channel> {
        ApiClient::new(grpc::channel(server.grpc_addr).await)
    }

    /// The gRPC code and the protocol's code name of a failed call.
    fn codes<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> (tonic::Code, String) {
        let status = result.unwrap_err();
        let name = status
            .metadata()
            .get(ERROR_CODE_METADATA)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status.code(), name)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unary_calls_answer_what_the_session_answers_with_mapped_status_codes() {
        let server = TestServer::start_on(BACKEND, Transport::Grpc).await;
        let mut api = api(&server).await;
        let registered = api
            .register(v1::Register {
                username: "unary".into(),
                password: PASSWORD.into(),
                display_name: "Unary".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(registered.user.unwrap().display_name, "Unary");
        let token = api
            .login(v1::Login {
                username: "unary".into(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .token;
        // A session over the stream makes a room and talks in it.
        let (other, _ev) = server.register("streamer").await;
        let room = other.create_room("grpc room", false).await.unwrap();
        for text in ["one", "two", "three"] {
            other.send_text(room.id, text).await.unwrap();
        }
        let rooms = api.list_rooms(authorized(&token, v1::ListRooms { limit: 10 })).await.unwrap();
        let listed = &rooms.get_ref().rooms[0];
        assert_eq!(listed.conversation.as_ref().unwrap().id, room.id);
        assert_eq!(listed.member_count, 1);
        // Not a member yet: a room's members are public, its history is not.
        let conversation = api
            .get_conversation(authorized(&token, v1::GetConversation { conversation_id: room.id }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(conversation.members.len(), 1);
        let history = v1::GetHistory {
            conversation_id: room.id,
            before_seq: 0,
            after_seq: None,
            limit: 10,
        };
        assert_eq!(
            codes(api.get_history(authorized(&token, history)).await),
            (tonic::Code::PermissionDenied, "PERMISSION_DENIED".into())
        );
        let (me, _me_ev) = server.login("unary").await;
        me.join(room.id).await.unwrap();
        let page = api
            .get_history(authorized(&token, history))
            .await
            .unwrap()
            .into_inner();
        let texts: Vec<_> = page.messages.iter().filter_map(|m| m.content.as_ref()?.as_text()).collect();
        assert_eq!(texts, ["one", "two", "three"]);
        let mine = api
            .list_conversations(authorized(&token, v1::ListConversations { limit: 10 }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(mine.conversations.len(), 1);
        // Typed errors as status codes, each with the protocol's code name.
        assert_eq!(
            codes(api.list_rooms(v1::ListRooms { limit: 1 }).await),
            (tonic::Code::Unauthenticated, "UNAUTHENTICATED".into())
        );
        assert_eq!(
            codes(api.list_rooms(authorized("not-a-token", v1::ListRooms { limit: 1 })).await),
            (tonic::Code::Unauthenticated, "UNAUTHENTICATED".into())
        );
        assert_eq!(
            codes(
                api.get_conversation(authorized(&token, v1::GetConversation { conversation_id: 987_654 }))
                    .await
            ),
            (tonic::Code::NotFound, "NOT_FOUND".into())
        );
        assert_eq!(
            codes(
                api.register(v1::Register {
                    username: "unary".into(),
                    password: PASSWORD.into(),
                    display_name: String::new(),
                })
                .await
            ),
            (tonic::Code::AlreadyExists, "CONFLICT".into())
        );
        assert_eq!(
            codes(
                api.login(v1::Login {
                    username: "unary".into(),
                    password: "wrong password".into(),
                })
                .await
            ),
            (tonic::Code::Unauthenticated, "UNAUTHENTICATED".into())
        );
        let mut bad_page = history;
        bad_page.before_seq = 5;
        bad_page.after_seq = Some(1);
        assert_eq!(
            codes(api.get_history(authorized(&token, bad_page)).await),
            (tonic::Code::InvalidArgument, "INVALID_ARGUMENT".into())
        );
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unary_calls_share_a_rate_limit_per_connection_and_reflection_lists_the_services() {
        let server = TestServer::start_on_with(BACKEND, Transport::Grpc, |c| {
            c.limits.requests_per_second = 1.0;
            c.limits.request_burst = 3.0;
        })
        .await;
        let mut api = api(&server).await;
        let mut refused = Vec::new();
        for _ in 0..6 {
            refused.push(api.list_rooms(v1::ListRooms { limit: 1 }).await.err().map(|s| s.code()));
        }
        assert_eq!(&refused[..3], &[Some(tonic::Code::Unauthenticated); 3]);
        assert!(refused.contains(&Some(tonic::Code::ResourceExhausted)), "{refused:?}");
        // A new connection has its own budget.
        let mut fresh = self::api(&server).await;
        assert_eq!(
            codes(fresh.list_rooms(v1::ListRooms { limit: 1 }).await).0,
            tonic::Code::Unauthenticated
        );

        // Server reflection names both services (what grpcurl asks first).
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let channel = grpc::channel(server.grpc_addr).await;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            answers.message().await.unwrap().unwrap().message_response
        else {
            panic!("not a service list");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"im.v1.Chat") && names.contains(&"im.v1.Api"), "{names:?}");
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stream_heartbeat_keeps_an_idle_session_and_drops_a_silent_one() {
        let server = TestServer::start_on_with(BACKEND, Transport::Grpc, |c| {
            c.server.heartbeat_interval_secs = 1;
            c.server.idle_timeout_secs = 2;
        })
        .await;
        let (idle, mut idle_ev) = server.register("idler").await;
        // A raw client that never answers the heartbeat.
        let mut silent = server.raw(None).await;
        silent.send_json(r#"{"requestId":"1","hello":{"protocolVersion":1}}"#).await;
        assert_eq!(silent.next_json().await["response"]["hello"]["protocolVersion"], 1);
        assert_eq!(silent.closed().await, Some(1001), "closed as idle");
        // The SDK answered every heartbeat: still the same session.
        tokio::time::sleep(Duration::from_secs(1)).await;
        while let Some(e) = idle_ev.try_next() {
            assert!(!matches!(e, Event::Disconnected { .. }), "{e:?}");
        }
        idle.create_room("still here", false).await.unwrap();
        server.stop().await;
    }

    /// Whether Python with grpcio-tools is here; CI must have it (`.ci/run`
    /// installs it), elsewhere the test says it is skipped.
    fn python_grpc() -> bool {
        let found = std::process::Command::new("python3")
            .args(["-c", "import grpc, grpc_tools"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var("CI").is_err(),
                "python3 with grpcio-tools is required in CI (pip install grpcio-tools)"
            );
            eprintln!("skipped: python3 with grpcio-tools is not installed");
        }
        found
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_python_client_generated_from_the_proto_logs_in_sends_and_receives() {
        if !python_grpc() {
            return;
        }
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let generated = tempfile::tempdir().unwrap();
        let protoc = std::process::Command::new("python3")
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(workspace.join("im-protocol/proto"))
            .arg(format!("--python_out={}", generated.path().display()))
            .arg(format!("--grpc_python_out={}", generated.path().display()))
            .args(["im/v1/im.proto", "im/v1/grpc.proto"])
            .output()
            .unwrap();
        assert!(protoc.status.success(), "{}", String::from_utf8_lossy(&protoc.stderr));

        let server = TestServer::start_on(BACKEND, Transport::Grpc).await;
        let (rusty, mut rusty_ev) = server.register("rusty").await;
        server.register("pythonista").await;
        let python = tokio::process::Command::new("python3")
            .arg(workspace.join("examples/python/grpc_chat.py"))
            .arg(server.grpc_addr.to_string())
            .args(["pythonista", PASSWORD, "--to"])
            .arg(rusty.user().id.to_string())
            .args(["--text", "hello from python", "--wait", "30"])
            .env("PYTHONPATH", generated.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let seen = events_until(&mut rusty_ev, |e| matches!(e, Event::Message(_))).await;
        let Some(Event::Message(heard)) = seen.last().cloned() else {
            unreachable!("events_until ends with the event asked for")
        };
        assert_eq!(text_of(&heard), "hello from python");
        rusty.send_text(heard.conversation_id, "hello python").await.unwrap();
        let out = tokio::time::timeout(Duration::from_secs(60), python.wait_with_output())
            .await
            .expect("the python client finishes")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(r#""ack": {"conversation_id": "#), "{stdout}");
        assert!(stdout.contains(r#""text": "hello python""#), "{stdout}");
        server.stop().await;
    }
}
