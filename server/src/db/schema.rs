//! The tables, written by hand with the types both backends share.

diesel::table! {
    settings (name) {
        name -> Text,
        value -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        role -> Text,
        password_hash -> Text,
        digest_ha1 -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    app_keys (id) {
        id -> BigInt,
        user_id -> BigInt,
        key_hash -> Text,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        nonce -> Nullable<Text>,
    }
}

diesel::table! {
    forms (form_id) {
        form_id -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    form_versions (id) {
        id -> BigInt,
        form_id -> Text,
        version -> Text,
        title -> Text,
        state -> Text,
        xml -> Binary,
        md5 -> Text,
        created_at -> Timestamp,
        published_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    form_media (id) {
        id -> BigInt,
        form_version_id -> BigInt,
        filename -> Text,
        content_type -> Text,
        md5 -> Text,
        sha256 -> Text,
        size -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    form_assignments (user_id, form_id) {
        user_id -> BigInt,
        form_id -> Text,
    }
}

diesel::table! {
    submissions (id) {
        id -> BigInt,
        instance_id -> Text,
        form_id -> Text,
        form_version -> Text,
        collector_id -> BigInt,
        review_state -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    submission_versions (id) {
        id -> BigInt,
        submission_id -> BigInt,
        instance_id -> Text,
        deprecated_id -> Nullable<Text>,
        form_version -> Text,
        xml -> Binary,
        xml_sha256 -> Text,
        instance_name -> Nullable<Text>,
        collector_id -> BigInt,
        device_id -> Nullable<Text>,
        received_at -> Timestamp,
        geo_lat -> Nullable<Double>,
        geo_lon -> Nullable<Double>,
        geo_alt -> Nullable<Double>,
        geo_accuracy -> Nullable<Double>,
        fields -> Text,
        is_current -> Bool,
        hamlet_code -> Nullable<Text>,
        activity_date -> Nullable<Date>,
        beneficiary_key -> Nullable<Text>,
        sensitive -> Nullable<Text>,
    }
}

diesel::table! {
    attachments (id) {
        id -> BigInt,
        version_id -> BigInt,
        name -> Text,
        sha256 -> Nullable<Text>,
        size -> Nullable<BigInt>,
        content_type -> Nullable<Text>,
        received_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    auth_throttle (key) {
        key -> Text,
        failures -> BigInt,
        window_start -> Timestamp,
        locked_until -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    digest_nonce_uses (nonce, nc, cnonce) {
        nonce -> Text,
        nc -> Text,
        cnonce -> Text,
        used_at -> Timestamp,
    }
}

diesel::table! {
    token_generations (user_id) {
        user_id -> BigInt,
        generation -> BigInt,
    }
}

diesel::table! {
    form_protection (form_id) {
        form_id -> Text,
        sensitive -> Bool,
        geo_decimals -> BigInt,
        consent_field -> Nullable<Text>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    submission_consent (version_id) {
        version_id -> BigInt,
        field -> Text,
        value -> Nullable<Text>,
        recorded_at -> Timestamp,
    }
}

diesel::table! {
    access_log (id) {
        id -> BigInt,
        at -> Timestamp,
        user_id -> BigInt,
        username -> Text,
        action -> Text,
        subject -> Text,
        purpose -> Text,
    }
}

diesel::table! {
    areas (id) {
        id -> BigInt,
        level -> Text,
        code -> Text,
        name -> Text,
        area_type -> Nullable<Text>,
        parent_id -> Nullable<BigInt>,
        valid_from -> Nullable<Date>,
        valid_to -> Nullable<Date>,
        region -> Nullable<Text>,
        especially_difficult -> Nullable<Bool>,
        border -> Nullable<Bool>,
        demo -> Bool,
        centroid_lat -> Nullable<Double>,
        centroid_lon -> Nullable<Double>,
        updated_at -> Timestamp,
        geometry -> Nullable<Text>,
    }
}

diesel::table! {
    area_successions (predecessor_id, successor_id) {
        predecessor_id -> BigInt,
        successor_id -> BigInt,
    }
}

diesel::table! {
    hamlet_assignments (user_id, hamlet_code) {
        user_id -> BigInt,
        hamlet_code -> Text,
    }
}

diesel::table! {
    submission_flags (version_id, flag) {
        version_id -> BigInt,
        flag -> Text,
    }
}

diesel::table! {
    form_sources (form_version_id) {
        form_version_id -> BigInt,
        filename -> Nullable<Text>,
        format -> Text,
        content_type -> Text,
        bytes -> Binary,
        size -> BigInt,
        sha256 -> Text,
        warnings -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    user_areas (user_id, area_code) {
        user_id -> BigInt,
        area_code -> Text,
    }
}

diesel::table! {
    submission_reviews (id) {
        id -> BigInt,
        submission_id -> BigInt,
        from_state -> Text,
        state -> Text,
        comment -> Nullable<Text>,
        user_id -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    submission_comments (id) {
        id -> BigInt,
        submission_id -> BigInt,
        user_id -> BigInt,
        body -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> Timestamp,
        actor_id -> Nullable<BigInt>,
        actor -> Text,
        action -> Text,
        target -> Nullable<Text>,
        details -> Text,
    }
}

diesel::table! {
    web_sessions (token_hash) {
        token_hash -> Text,
        user_id -> BigInt,
        csrf_token -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    submission_areas (submission_id, area_code) {
        submission_id -> BigInt,
        area_code -> Text,
    }
}

diesel::table! {
    indicator_cells (snapshot, measure, basis, map, level, period, area_id, dims) {
        snapshot -> BigInt,
        measure -> Text,
        basis -> Text,
        map -> Text,
        level -> Text,
        period -> Text,
        area_id -> BigInt,
        dims -> Text,
        value -> BigInt,
    }
}

diesel::table! {
    indicator_rollups (snapshot, measure, basis, map, level, period, area_id, dim, dim_value) {
        snapshot -> BigInt,
        measure -> Text,
        basis -> Text,
        map -> Text,
        level -> Text,
        period -> Text,
        area_id -> BigInt,
        dim -> Text,
        dim_value -> Text,
        value -> BigInt,
    }
}

diesel::table! {
    indicator_facts (snapshot, submission_id, measure, seq) {
        snapshot -> BigInt,
        submission_id -> BigInt,
        measure -> Text,
        seq -> BigInt,
        distinct_key -> Nullable<Text>,
        value -> BigInt,
        hamlet_code -> Text,
        activity_date -> Date,
        dims -> Text,
        provisional -> Bool,
        confirmed -> Bool,
    }
}

diesel::table! {
    indicator_backlog (submission_id) {
        submission_id -> BigInt,
        by_user -> Nullable<BigInt>,
    }
}

diesel::table! {
    indicator_applied (submission_id) {
        submission_id -> BigInt,
        version_id -> BigInt,
        provisional -> Bool,
        confirmed -> Bool,
    }
}

diesel::table! {
    indicator_definitions (indicator) {
        indicator -> Text,
        source -> Text,
        fingerprints -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    indicator_targets (snapshot, indicator, measure, area_id, year) {
        snapshot -> BigInt,
        indicator -> Text,
        measure -> Text,
        area_id -> BigInt,
        year -> BigInt,
        target -> Double,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    indicator_baselines (snapshot, baseline, area_id, year) {
        snapshot -> BigInt,
        baseline -> Text,
        area_id -> BigInt,
        year -> BigInt,
        value -> Double,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    indicator_periods (id) {
        id -> BigInt,
        period -> Text,
        closed_at -> Timestamp,
        closed_by -> Nullable<BigInt>,
        note -> Nullable<Text>,
        definitions -> Text,
    }
}

diesel::table! {
    indicator_revisions (id) {
        id -> BigInt,
        period_id -> BigInt,
        submission_id -> Nullable<BigInt>,
        reason -> Text,
        user_id -> Nullable<BigInt>,
        at -> Timestamp,
        changes -> Text,
    }
}

diesel::table! {
    api_keys (id) {
        id -> BigInt,
        user_id -> BigInt,
        name -> Text,
        prefix -> Text,
        key_hash -> Text,
        scopes -> Text,
        created_at -> Timestamp,
        created_by -> BigInt,
        expires_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    token_signing_keys (kid) {
        kid -> Text,
        secret -> Text,
        created_at -> Timestamp,
        retired_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    submission_changes (seq) {
        seq -> BigInt,
        txid -> BigInt,
        submission_id -> BigInt,
        instance_id -> Text,
        kind -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    deleted_submissions (submission_id) {
        submission_id -> BigInt,
        instance_id -> Text,
        form_id -> Text,
        collector_id -> BigInt,
        deleted_at -> Timestamp,
        deleted_by -> BigInt,
    }
}

diesel::table! {
    deleted_submission_areas (submission_id, area_code) {
        submission_id -> BigInt,
        area_code -> Text,
    }
}

diesel::joinable!(app_keys -> users (user_id));
diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(form_versions -> forms (form_id));
diesel::joinable!(form_media -> form_versions (form_version_id));
diesel::joinable!(submission_versions -> submissions (submission_id));
diesel::joinable!(attachments -> submission_versions (version_id));
diesel::joinable!(submission_flags -> submission_versions (version_id));
diesel::joinable!(hamlet_assignments -> users (user_id));
diesel::joinable!(form_sources -> form_versions (form_version_id));

diesel::joinable!(user_areas -> users (user_id));
diesel::joinable!(submission_reviews -> submissions (submission_id));
diesel::joinable!(submission_comments -> submissions (submission_id));
diesel::table! {
    push_targets (id) {
        id -> BigInt,
        name -> Text,
        kind -> Text,
        url -> Text,
        secret -> Binary,
        settings -> Text,
        enabled -> Bool,
        next_push_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    deliveries (id) {
        id -> BigInt,
        target_id -> BigInt,
        event -> Text,
        idempotency_key -> Text,
        payload -> Text,
        status -> Text,
        attempts -> BigInt,
        created_at -> Timestamp,
        retry_from -> Timestamp,
        next_attempt_at -> Timestamp,
        leased_by -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        delivered_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(deliveries -> push_targets (target_id));
diesel::joinable!(web_sessions -> users (user_id));
diesel::joinable!(submission_areas -> submissions (submission_id));

diesel::allow_tables_to_appear_in_same_query!(
    settings,
    users,
    app_keys,
    forms,
    form_versions,
    form_media,
    form_assignments,
    submissions,
    submission_versions,
    attachments,
    auth_throttle,
    digest_nonce_uses,
    token_generations,
    form_protection,
    submission_consent,
    access_log,
    areas,
    area_successions,
    hamlet_assignments,
    submission_flags,
    form_sources,
    user_areas,
    submission_reviews,
    submission_comments,
    audit_log,
    web_sessions,
    submission_areas,
    indicator_cells,
    indicator_rollups,
    indicator_facts,
    indicator_applied,
    indicator_backlog,
    indicator_definitions,
    indicator_targets,
    indicator_baselines,
    indicator_periods,
    indicator_revisions,
    export_jobs,
    api_keys,
    token_signing_keys,
    submission_changes,
    deleted_submissions,
    deleted_submission_areas,
    push_targets,
    deliveries,
);

diesel::table! {
    export_jobs (id) {
        id -> Text,
        user_id -> BigInt,
        form_id -> Text,
        format -> Text,
        spec -> Text,
        status -> Text,
        total -> Nullable<BigInt>,
        done -> BigInt,
        attempts -> BigInt,
        file_size -> Nullable<BigInt>,
        error -> Nullable<Text>,
        owner -> Nullable<Text>,
        heartbeat_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}
