use super::*;
// Fixed vector from the Standard Webhooks specification's examples.
const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SPEC_TS: i64 = 1614265330;
const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

#[test]
fn matches_the_specification_vector() {
    let secret = Secret::parse(SPEC_SECRET).unwrap();
    assert_eq!(standard_signature(&secret, SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
    verify_signature(
        &secret,
        SPEC_ID,
        &SPEC_TS.to_string(),
        SPEC_BODY,
        SPEC_SIG,
        SPEC_TS + 10,
        Duration::from_secs(300),
    )
    .unwrap();
}

#[test]
fn legacy_signature_is_hex_hmac_of_the_body() {
    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    let secret = Secret("Jefe".into());
    assert_eq!(
        legacy_signature(&secret, b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn verification_refuses_tampering_staleness_and_wrong_keys() {
    let secret = Secret::generate();
    let sig = standard_signature(&secret, "msg_1", 1_000, b"{}");
    let ok = |body: &[u8], sigs: &str, now| {
        verify_signature(&secret, "msg_1", "1000", body, sigs, now, Duration::from_secs(300))
    };
    assert_eq!(ok(b"{}", &sig, 1_100), Ok(()));
    assert_eq!(ok(b"{ }", &sig, 1_100), Err(VerifyError::NoMatch), "body changed");
    assert_eq!(ok(b"{}", &sig, 2_000), Err(VerifyError::StaleTimestamp));
    assert_eq!(ok(b"{}", "v1,AAAA", 1_100), Err(VerifyError::NoMatch));
    let other = Secret::generate();
    let both = signature_header(&[&other, &secret], "msg_1", 1_000, b"{}");
    assert_eq!(both.split(' ').count(), 2);
    assert_eq!(ok(b"{}", &both, 1_100), Ok(()), "one of two signatures suffices (rotation)");
    assert_eq!(
        verify_signature(&secret, "msg_1", "soon", b"{}", &sig, 1_000, Duration::from_secs(1)),
        Err(VerifyError::BadTimestamp)
    );
}

#[test]
fn secrets_are_validated() {
    let s = Secret::generate();
    assert!(s.expose().starts_with("whsec_"));
    assert_eq!(Secret::parse(s.expose()).unwrap(), s);
    assert!(Secret::parse("whsec_!!!").is_err());
    assert!(Secret::parse("short").is_err());
    assert!(Secret::parse("a-seed-style-secret-of-enough-length").is_ok());
    assert!(!format!("{s:?}").contains(s.expose()));
}

#[test]
fn rotation_keeps_old_secrets_for_their_grace_only() {
    let first = Secret::generate();
    let mut hook = WebhookConfig {
        id: WebhookConfig::new_id(),
        name: "n".into(),
        url: "https://example.com/h".into(),
        events: vec!["*".parse().unwrap()],
        channels: vec![],
        secret: first.expose().into(),
        is_active: true,
        retry_count: 3,
        timeout: 30,
        created_at: 0,
        updated_at: 0,
        previous_secrets: vec![],
        disabled_reason: None,
    };
    let second = Secret::generate();
    hook.rotate(second.clone(), Duration::from_secs(10), 1_000);
    assert_eq!(hook.signing_secrets(5_000), [second.clone(), first.clone()], "current first, then the old one");
    assert_eq!(hook.signing_secrets(11_000), std::slice::from_ref(&second), "grace over");
    assert!(!hook.public_view().to_string().contains(first.expose()), "old secrets are never shown");
    let third = Secret::generate();
    hook.rotate(third.clone(), Duration::ZERO, 2_000);
    assert_eq!(hook.signing_secrets(2_001), [third], "a zero grace revokes every old secret");
}

#[test]
fn log_entries_are_bounded_after_escaping() {
    let delivery = Delivery {
        delivery_id: "msg_1".into(),
        tenant_id: "acme".parse().unwrap(),
        webhook_id: "wh_1".parse().unwrap(),
        event: crate::event::EventType::ChatMessage,
        timestamp: 0,
        data: serde_json::json!({"text": "z".repeat(100_000)}),
        channel: None,
        attempt_base: 0,
    };
    // A binary answer: each control byte escapes to six characters.
    let binary: String = (0..RESPONSE_EXCERPT_BYTES).map(|i| char::from((i % 32) as u8)).collect();
    let entry = LogEntry {
        webhook_id: "wh_1".parse().unwrap(),
        delivery_id: "msg_1".into(),
        event: crate::event::EventType::ChatMessage,
        attempt: 1,
        response_code: Some(500),
        response_body: binary,
        error: None,
        duration_ms: 1,
        status: LogStatus::Failed,
        created_at: 0,
        next_attempt_at: None,
        delivery,
        data_omitted: None,
    };
    let unbounded = serde_json::to_string(&entry).unwrap().len();
    assert!(unbounded > 200_000, "{unbounded}");
    let bounded = entry.clone().bounded(16 * 1024);
    let text = serde_json::to_string(&bounded).unwrap();
    assert!(text.len() <= 16 * 1024, "{} bytes", text.len());
    assert_eq!(bounded.delivery.data, serde_json::Value::Null);
    let omitted = bounded.data_omitted.unwrap();
    assert_eq!(omitted.bytes, serde_json::to_string(&entry.delivery.data).unwrap().len());
    assert_eq!(omitted.sha256.len(), 64);
    let small =
        LogEntry { delivery: Delivery { data: serde_json::json!({"a": 1}), ..entry.delivery.clone() }, ..entry };
    assert_eq!(small.bounded(16 * 1024).delivery.data, serde_json::json!({"a": 1}), "small data is kept");
    assert_eq!(cut_escaped("ab\"cd", 4), "ab\"");
    assert_eq!(cut_escaped("héllo", 2), "h", "never mid-character");
}

#[test]
fn the_schedule_is_data() {
    let s = RetrySchedule { delays: vec![Duration::from_secs(10), Duration::from_secs(60)], jitter: 0.5 };
    assert_eq!(s.delay_after(1, 0.5), Duration::from_secs(10));
    assert_eq!(s.delay_after(1, 0.0), Duration::from_secs(5));
    assert_eq!(s.delay_after(2, 1.0), Duration::from_secs(90));
    assert_eq!(s.delay_after(9, 0.5), Duration::from_secs(60), "the last delay repeats");
    assert_eq!(s.with_retry_after(Duration::from_secs(10), Some(Duration::from_secs(120))), Duration::from_secs(120));
    assert_eq!(s.with_retry_after(Duration::from_secs(10), Some(Duration::from_secs(1))), Duration::from_secs(10));
    assert_eq!(
        s.with_retry_after(Duration::from_secs(10), Some(Duration::from_secs(86_400))),
        Duration::from_secs(43_200)
    );
    let day = Duration::from_secs(86_400);
    assert!(RetrySchedule::fits_retention(0, 3_600_000, Duration::from_secs(12 * 3600), day));
    assert!(
        !RetrySchedule::fits_retention(0, 20 * 3_600_000, Duration::from_secs(4 * 3600), day),
        "24 h would pass the day"
    );
    assert!(!RetrySchedule::fits_retention(0, 0, day, day), "the margin counts");
    assert_eq!(RetrySchedule::default().delays.len(), 7);
    assert!(RetrySchedule::default().delays.iter().all(|d| d.as_secs() <= 12 * 3600), "SQS's limit");
}

/// The delivery policy as a pure function: one case per rule.
mod decisions {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn schedule() -> RetrySchedule {
        RetrySchedule { delays: vec![Duration::from_secs(5), Duration::from_secs(300)], jitter: 0.0 }
    }

    fn decide_at(outcome: Outcome, attempt: u32, retention: Duration, sent_ms: i64) -> Decision {
        let schedule = schedule();
        let retries = Retries { max_attempts: 3, schedule: &schedule, retention };
        decide(&outcome, attempt, &retries, When { now_ms: NOW, sent_ms, jitter: 0.5 })
    }

    fn decision(outcome: Outcome, attempt: u32) -> Decision {
        decide_at(outcome, attempt, Duration::from_secs(4 * 86_400), NOW)
    }

    #[test]
    fn a_delivered_or_gone_attempt_is_the_last() {
        assert_eq!(
            decision(Outcome::Delivered, 1),
            Decision { status: LogStatus::Delivered, retry_in: None, note: None }
        );
        assert_eq!(decision(Outcome::Gone, 2), Decision { status: LogStatus::Gone, retry_in: None, note: None });
    }

    #[test]
    fn a_failure_waits_its_turn_in_the_schedule_and_a_longer_retry_after() {
        let first = decision(Outcome::Retry { retry_after: None }, 1);
        assert_eq!((first.status, first.retry_in), (LogStatus::Failed, Some(Duration::from_secs(5))));
        let second = decision(Outcome::Retry { retry_after: None }, 2);
        assert_eq!(second.retry_in, Some(Duration::from_secs(300)));
        let asked = decision(Outcome::Retry { retry_after: Some(Duration::from_secs(60)) }, 1);
        assert_eq!(asked.retry_in, Some(Duration::from_secs(60)), "the receiver asked for more time");
        let sooner = decision(Outcome::Retry { retry_after: Some(Duration::from_secs(1)) }, 2);
        assert_eq!(sooner.retry_in, Some(Duration::from_secs(300)), "never sooner than our own backoff");
    }

    #[test]
    fn the_last_attempt_and_a_rejection_are_dead() {
        assert_eq!(decision(Outcome::Retry { retry_after: None }, 3).status, LogStatus::Dead);
        assert_eq!(decision(Outcome::Rejected, 1), Decision { status: LogStatus::Dead, retry_in: None, note: None });
    }

    #[test]
    fn a_retry_that_would_outlive_the_queue_is_dead_now_and_says_why() {
        // Sent an hour ago into a queue that keeps messages 70 minutes; a
        // 300 s wait fits, but not within the 10-minute margin.
        let d = decide_at(Outcome::Retry { retry_after: None }, 2, Duration::from_secs(4200), NOW - 3_600_000);
        assert_eq!((d.status, d.retry_in), (LogStatus::Dead, None));
        assert!(d.note.unwrap().contains("after the queue's 4200 s retention"));
        let fits = decide_at(Outcome::Retry { retry_after: None }, 1, Duration::from_secs(4200), NOW - 3_000_000);
        assert_eq!(fits.status, LogStatus::Failed);
    }

    #[test]
    fn a_gone_receiver_or_one_failing_too_long_disables_the_webhook() {
        let day = Duration::from_secs(86_400);
        assert_eq!(disable(&Outcome::Gone, None, NOW, day), Some(Disable::Gone));
        let failing = Outcome::Retry { retry_after: None };
        assert_eq!(disable(&failing, None, NOW, day), None, "it has not failed before");
        assert_eq!(disable(&failing, Some(NOW - 1000), NOW, day), None, "not for long enough");
        let disabled = disable(&failing, Some(NOW - 86_400_000), NOW, day).expect("a day of failures");
        assert_eq!(disabled.reason(), format!("failing since {} (every attempt for 86400 s)", NOW - 86_400_000));
        assert_eq!(disable(&Outcome::Delivered, None, NOW, day), None);
    }

    #[test]
    fn a_dead_letter_holds_only_what_its_producer_knows() {
        let letter = DeadLetter {
            body: Some("{".into()),
            error: Some("not a delivery".into()),
            dead_at: 7,
            ..DeadLetter::default()
        };
        let json: serde_json::Value = serde_json::from_str(&letter.to_json()).unwrap();
        assert_eq!(json, serde_json::json!({"body": "{", "error": "not a delivery", "dead_at": 7}));
        assert_eq!(serde_json::from_value::<DeadLetter>(json).unwrap(), letter);
    }
}

#[test]
fn a_webhook_with_channel_patterns_wants_only_their_events() {
    let mut hook = WebhookConfig::new("n", "https://example.com/h", vec!["call.*".parse().unwrap()], 0);
    let queue = crate::channel::Channel::parse("queue:support").unwrap();
    let call = crate::channel::Channel::parse("call:1").unwrap();
    let e = crate::event::EventType::CallIncoming;
    assert!(hook.wants(e, None) && hook.wants(e, Some(&queue)), "no patterns: every target");
    hook.channels = vec!["queue:*".parse().unwrap()];
    assert!(hook.wants(e, Some(&queue)));
    assert!(!hook.wants(e, Some(&call)) && !hook.wants(e, None), "only a matching channel's events");
    assert!(!hook.wants(crate::event::EventType::QueueStats, Some(&queue)), "and only its topics");
    hook.is_active = false;
    assert!(!hook.wants(e, Some(&queue)));
}
