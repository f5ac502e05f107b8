//! The tables, as diesel sees them. The DDL lives in `migrations/sqlite` and
//! `migrations/postgres` (the two dialects differ); both create these columns.

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        username_lower -> Text,
        display_name -> Text,
        display_lower -> Text,
        avatar_url -> Text,
        password_hash -> Text,
        created_at -> BigInt,
        last_seen -> BigInt,
    }
}

diesel::table! {
    identities (issuer, subject) {
        issuer -> Text,
        subject -> Text,
        user_id -> BigInt,
    }
}

diesel::table! {
    tokens (token_hash) {
        token_hash -> Text,
        user_id -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    conversations (id) {
        id -> BigInt,
        kind -> Integer,
        title -> Text,
        ephemeral -> Bool,
        created_by -> BigInt,
        created_at -> BigInt,
        last_seq -> BigInt,
        last_version -> BigInt,
        member_count -> Integer,
        direct_key -> Nullable<Text>,
        member_version -> BigInt,
        message_ttl_ms -> BigInt,
        join_policy -> Integer,
        members_muted -> Bool,
        contact_version -> BigInt,
    }
}

diesel::table! {
    members (conversation_id, user_id) {
        conversation_id -> BigInt,
        user_id -> BigInt,
        role -> Integer,
        joined_at -> BigInt,
        read_seq -> BigInt,
        delivered_seq -> BigInt,
        pinned_at -> BigInt,
        muted_until -> BigInt,
        archived -> Bool,
        marked_unread -> Bool,
        private_version -> BigInt,
        send_muted_until -> BigInt,
    }
}

diesel::table! {
    bans (conversation_id, user_id) {
        conversation_id -> BigInt,
        user_id -> BigInt,
        banned_by -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    invitations (conversation_id, user_id) {
        conversation_id -> BigInt,
        user_id -> BigInt,
        invited_by -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    join_requests (conversation_id, user_id) {
        conversation_id -> BigInt,
        user_id -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    messages (id) {
        id -> BigInt,
        conversation_id -> BigInt,
        seq -> BigInt,
        version -> BigInt,
        sender_id -> BigInt,
        client_msg_id -> Nullable<Text>,
        created_at -> BigInt,
        content -> Binary,
        edited_at -> BigInt,
        recalled_at -> BigInt,
        recalled_by -> BigInt,
        reactions -> Nullable<Binary>,
        thread_root_id -> BigInt,
        pinned_at -> BigInt,
        pinned_by -> BigInt,
        meta -> Nullable<Binary>,
        expires_at -> BigInt,
    }
}

diesel::table! {
    mentions (conversation_id, user_id, seq) {
        conversation_id -> BigInt,
        user_id -> BigInt,
        seq -> BigInt,
        sender_id -> BigInt,
    }
}

diesel::table! {
    search_index (id) {
        id -> Integer,
        tokenizer_version -> Integer,
    }
}

diesel::table! {
    thread_reads (conversation_id, root_id, user_id) {
        conversation_id -> BigInt,
        root_id -> BigInt,
        user_id -> BigInt,
        read_seq -> BigInt,
    }
}

diesel::table! {
    message_edits (id) {
        id -> BigInt,
        message_id -> BigInt,
        written_at -> BigInt,
        content -> Binary,
    }
}

diesel::table! {
    reactions (message_id, emoji, user_id) {
        message_id -> BigInt,
        emoji -> Text,
        user_id -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    hidden_messages (user_id, message_id) {
        user_id -> BigInt,
        message_id -> BigInt,
        conversation_id -> BigInt,
        private_version -> BigInt,
    }
}

diesel::table! {
    files (id) {
        id -> Text,
        uploader_id -> BigInt,
        name -> Text,
        size -> BigInt,
        stored_bytes -> BigInt,
        mime_type -> Text,
        sha256 -> Text,
        status -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
        completed_at -> Nullable<BigInt>,
        width -> Nullable<BigInt>,
        height -> Nullable<BigInt>,
        duration_ms -> Nullable<BigInt>,
        thumbnail_id -> Nullable<Text>,
    }
}

diesel::table! {
    file_shares (file_id, conversation_id) {
        file_id -> Text,
        conversation_id -> BigInt,
        shared_at -> BigInt,
    }
}

diesel::table! {
    friend_requests (from_user, to_user) {
        from_user -> BigInt,
        to_user -> BigInt,
        message -> Text,
        state -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    friends (user_id, friend_id) {
        user_id -> BigInt,
        friend_id -> BigInt,
        since -> BigInt,
    }
}

diesel::table! {
    blocks (blocker, blocked) {
        blocker -> BigInt,
        blocked -> BigInt,
        created_at -> BigInt,
    }
}

diesel::joinable!(file_shares -> files (file_id));
diesel::allow_tables_to_appear_in_same_query!(
    conversations,
    members,
    messages,
    files,
    file_shares,
    message_edits,
    reactions,
    hidden_messages,
    mentions,
    thread_reads,
    bans,
    invitations,
    join_requests,
    friend_requests,
    friends,
    blocks
);
