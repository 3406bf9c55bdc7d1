//! Interop with `rumqttc` 0.25, an MQTT client nobody here wrote, through a midge server in
//! this process: its 3.1.1 API (`rumqttc::AsyncClient`) and its 5.0 API
//! (`rumqttc::v5::AsyncClient`), each publishing and receiving at QoS 0, 1 and 2, retained
//! messages, wills (fired by a killed connection and by keep-alive expiry, not by a normal
//! DISCONNECT), a persistent session resumed after reconnect, and (5.0) the request/response
//! properties forwarded unchanged.
//!
//! Each client's event loop runs in its own task that forwards every incoming packet to the
//! test. "Killing" a client aborts that task: the event loop and its socket are dropped, so
//! the broker sees the TCP connection end without a DISCONNECT. "Freezing" it stops polling
//! while keeping the socket open, so the client goes silent and only keep-alive can notice.
//! Every wait is bounded; a test fails, never hangs.

#![allow(clippy::unwrap_used)]

mod interop_support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use interop_support::start_server;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long any single expected event may take.
const WAIT: Duration = Duration::from_secs(5);
/// How long to watch for something that must not arrive.
const QUIET: Duration = Duration::from_millis(400);

/// The 3.1.1 API: `rumqttc::{AsyncClient, MqttOptions, EventLoop}`.
mod v4 {
    use super::*;
    use rumqttc::{
        AsyncClient, ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet,
        Publish, QoS, SubscribeReasonCode,
    };

    /// One rumqttc 3.1.1 client with its event loop in a task.
    pub struct Client {
        pub client: AsyncClient,
        pub session_present: bool,
        events: mpsc::UnboundedReceiver<Result<Packet, String>>,
        buffered: VecDeque<Packet>,
        task: JoinHandle<()>,
        freeze: Option<oneshot::Sender<()>>,
    }

    pub fn options(port: u16, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    fn spawn(
        mut el: EventLoop,
    ) -> (
        mpsc::UnboundedReceiver<Result<Packet, String>>,
        JoinHandle<()>,
        oneshot::Sender<()>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (freeze_tx, mut freeze_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = el.poll() => match ev {
                        Ok(Event::Incoming(p)) => {
                            if tx.send(Ok(p)).is_err() {
                                return;
                            }
                        }
                        // Sent and flushed: stop here, so rumqttc does not reconnect.
                        Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                        Ok(Event::Outgoing(_)) => {}
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    },
                    // Stop polling but keep the event loop, and so the socket, alive.
                    _ = &mut freeze_rx => {
                        let _keep = el;
                        std::future::pending::<()>().await;
                        return;
                    }
                }
            }
        });
        (rx, task, freeze_tx)
    }

    impl Client {
        /// Connects and waits for a successful CONNACK.
        pub async fn connect(options: MqttOptions) -> Client {
            let (client, el) = AsyncClient::new(options, 64);
            let (events, task, freeze) = spawn(el);
            let mut c = Client {
                client,
                session_present: false,
                events,
                buffered: VecDeque::new(),
                task,
                freeze: Some(freeze),
            };
            let Packet::ConnAck(ack) = c.next("CONNACK", |p| matches!(p, Packet::ConnAck(_))).await
            else {
                unreachable!()
            };
            assert_eq!(ack.code, ConnectReturnCode::Success);
            c.session_present = ack.session_present;
            c
        }

        /// The first incoming packet matching `pred`; others are kept for later calls.
        pub async fn next(&mut self, what: &str, pred: impl Fn(&Packet) -> bool) -> Packet {
            if let Some(i) = self.buffered.iter().position(&pred) {
                return self.buffered.remove(i).unwrap();
            }
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let got = tokio::time::timeout_at(deadline, self.events.recv())
                    .await
                    .unwrap_or_else(|_| {
                        panic!("no {what} within {WAIT:?}; got {:?}", self.buffered)
                    });
                match got {
                    Some(Ok(p)) if pred(&p) => return p,
                    Some(Ok(p)) => self.buffered.push_back(p),
                    Some(Err(e)) => panic!("connection failed while waiting for {what}: {e}"),
                    None => panic!("event loop ended while waiting for {what}"),
                }
            }
        }

        pub async fn recv_publish(&mut self) -> Publish {
            match self
                .next("PUBLISH", |p| matches!(p, Packet::Publish(_)))
                .await
            {
                Packet::Publish(p) => p,
                _ => unreachable!(),
            }
        }

        /// Asserts that no PUBLISH arrives within [`QUIET`].
        pub async fn expect_no_publish(&mut self) {
            let deadline = tokio::time::Instant::now() + QUIET;
            while let Ok(got) = tokio::time::timeout_at(deadline, self.events.recv()).await {
                match got {
                    Some(Ok(p)) => self.buffered.push_back(p),
                    Some(Err(e)) => panic!("connection failed: {e}"),
                    None => break,
                }
            }
            let publishes: Vec<_> = self
                .buffered
                .iter()
                .filter(|p| matches!(p, Packet::Publish(_)))
                .collect();
            assert!(publishes.is_empty(), "unexpected {publishes:?}");
        }

        /// Subscribes and returns the granted QoS.
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> QoS {
            self.client.subscribe(filter, qos).await.unwrap();
            match self
                .next("SUBACK", |p| matches!(p, Packet::SubAck(_)))
                .await
            {
                Packet::SubAck(ack) => match ack.return_codes.as_slice() {
                    [SubscribeReasonCode::Success(q)] => *q,
                    other => panic!("SUBACK for {filter}: {other:?}"),
                },
                _ => unreachable!(),
            }
        }

        /// Publishes and, for QoS 1 and 2, waits for the PUBACK or PUBCOMP.
        pub async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
            self.client
                .publish(topic, qos, retain, payload.to_vec())
                .await
                .unwrap();
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    self.next("PUBACK", |p| matches!(p, Packet::PubAck(_)))
                        .await;
                }
                QoS::ExactlyOnce => {
                    self.next("PUBREC", |p| matches!(p, Packet::PubRec(_)))
                        .await;
                    self.next("PUBCOMP", |p| matches!(p, Packet::PubComp(_)))
                        .await;
                }
            }
        }

        /// Sends DISCONNECT and waits for the event loop to end.
        pub async fn disconnect(mut self) {
            self.client.disconnect().await.unwrap();
            let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
            tokio::time::timeout(WAIT, task)
                .await
                .expect("event loop ends after DISCONNECT")
                .unwrap();
        }

        /// Drops the event loop and its socket without a DISCONNECT.
        pub async fn kill(mut self) {
            self.task.abort();
            let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
            let _ = task.await;
        }

        /// Stops reading and writing while keeping the socket open.
        pub fn freeze(&mut self) {
            self.freeze.take().unwrap().send(()).unwrap();
        }
    }

    impl Drop for Client {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pub_sub_at_qos_0_1_2() {
        let (server, port) = start_server().await;
        let mut sub = Client::connect(options(port, "v4-sub")).await;
        assert_eq!(
            sub.subscribe("qos/#", QoS::ExactlyOnce).await,
            QoS::ExactlyOnce
        );
        // A second subscriber granted QoS 1 gets at most QoS 1.
        let mut sub1 = Client::connect(options(port, "v4-sub1")).await;
        assert_eq!(
            sub1.subscribe("qos/+", QoS::AtLeastOnce).await,
            QoS::AtLeastOnce
        );
        let mut publisher = Client::connect(options(port, "v4-pub")).await;

        let qoses = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
        for (i, qos) in qoses.into_iter().enumerate() {
            publisher
                .publish(&format!("qos/{i}"), qos, false, format!("m{i}").as_bytes())
                .await;
        }
        for (i, qos) in qoses.into_iter().enumerate() {
            let p = sub.recv_publish().await;
            assert_eq!(
                (p.topic.as_str(), &p.payload[..], p.qos, p.retain, p.dup),
                (
                    format!("qos/{i}").as_str(),
                    format!("m{i}").as_bytes(),
                    qos,
                    false,
                    false
                )
            );
            let p = sub1.recv_publish().await;
            let expected = if qos == QoS::ExactlyOnce {
                QoS::AtLeastOnce
            } else {
                qos
            };
            assert_eq!(
                (p.topic.as_str(), p.qos),
                (format!("qos/{i}").as_str(), expected)
            );
        }
        // The subscriber publishes too, and the publisher receives, at every QoS.
        assert_eq!(
            publisher.subscribe("back", QoS::ExactlyOnce).await,
            QoS::ExactlyOnce
        );
        for qos in qoses {
            sub.publish("back", qos, false, b"reply").await;
            let p = publisher.recv_publish().await;
            assert_eq!((&p.payload[..], p.qos), (&b"reply"[..], qos));
        }
        sub.expect_no_publish().await;
        sub1.expect_no_publish().await;
        for c in [sub, sub1, publisher] {
            c.disconnect().await;
        }
        server.shutdown(WAIT).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retained_messages() {
        let (server, port) = start_server().await;
        let mut publisher = Client::connect(options(port, "v4-ret-pub")).await;
        publisher
            .publish("ret/a", QoS::AtLeastOnce, true, b"old")
            .await;
        publisher
            .publish("ret/a", QoS::ExactlyOnce, true, b"new")
            .await;
        publisher
            .publish("ret/b", QoS::AtMostOnce, true, b"b")
            .await;

        // A new subscription gets the newest retained message of each topic, retain set.
        let mut sub = Client::connect(options(port, "v4-ret-sub")).await;
        sub.subscribe("ret/#", QoS::ExactlyOnce).await;
        let mut got = [sub.recv_publish().await, sub.recv_publish().await];
        got.sort_by(|a, b| a.topic.cmp(&b.topic));
        assert_eq!(
            got.iter()
                .map(|p| (p.topic.as_str(), &p.payload[..], p.qos, p.retain))
                .collect::<Vec<_>>(),
            vec![
                ("ret/a", &b"new"[..], QoS::ExactlyOnce, true),
                ("ret/b", &b"b"[..], QoS::AtMostOnce, true),
            ]
        );
        sub.expect_no_publish().await;

        // [MQTT-3.3.1-9] a message sent to an existing subscription has retain cleared.
        publisher
            .publish("ret/a", QoS::AtLeastOnce, true, b"live")
            .await;
        let p = sub.recv_publish().await;
        assert_eq!((&p.payload[..], p.retain), (&b"live"[..], false));

        // An empty retained payload deletes it.
        publisher
            .publish("ret/a", QoS::AtLeastOnce, true, b"")
            .await;
        publisher
            .publish("ret/b", QoS::AtLeastOnce, true, b"")
            .await;
        let mut late = Client::connect(options(port, "v4-ret-late")).await;
        late.subscribe("ret/#", QoS::AtLeastOnce).await;
        late.expect_no_publish().await;

        for c in [publisher, sub, late] {
            c.disconnect().await;
        }
        server.shutdown(WAIT).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn will_on_killed_connection_not_on_disconnect() {
        let (server, port) = start_server().await;
        let mut watcher = Client::connect(options(port, "v4-will-watch")).await;
        watcher.subscribe("will/#", QoS::ExactlyOnce).await;

        // A normal DISCONNECT discards the will.
        let mut o = options(port, "v4-will-polite");
        o.set_last_will(LastWill::new(
            "will/polite",
            "gone",
            QoS::AtLeastOnce,
            false,
        ));
        Client::connect(o).await.disconnect().await;
        watcher.expect_no_publish().await;

        // The connection ends without DISCONNECT: the will is published.
        let mut o = options(port, "v4-will-killed");
        o.set_last_will(LastWill::new(
            "will/killed",
            "gone",
            QoS::ExactlyOnce,
            false,
        ));
        Client::connect(o).await.kill().await;
        let p = watcher.recv_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos, p.retain),
            ("will/killed", &b"gone"[..], QoS::ExactlyOnce, false)
        );

        // A retained will is kept for later subscribers.
        let mut o = options(port, "v4-will-retained");
        o.set_last_will(LastWill::new(
            "will/kept",
            "still gone",
            QoS::AtLeastOnce,
            true,
        ));
        Client::connect(o).await.kill().await;
        let p = watcher.recv_publish().await;
        assert_eq!(p.topic, "will/kept");
        let mut late = Client::connect(options(port, "v4-will-late")).await;
        late.subscribe("will/kept", QoS::AtLeastOnce).await;
        let p = late.recv_publish().await;
        assert_eq!((&p.payload[..], p.retain), (&b"still gone"[..], true));

        watcher.disconnect().await;
        late.disconnect().await;
        server.shutdown(WAIT).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn will_on_keep_alive_expiry() {
        let (server, port) = start_server().await;
        let mut watcher = Client::connect(options(port, "v4-ka-watch")).await;
        watcher.subscribe("ka/will", QoS::AtLeastOnce).await;

        let mut o = options(port, "v4-ka-silent");
        o.set_keep_alive(Duration::from_secs(1));
        o.set_last_will(LastWill::new(
            "ka/will",
            "timed out",
            QoS::AtLeastOnce,
            false,
        ));
        let mut silent = Client::connect(o).await;
        let connected = Instant::now();
        silent.freeze();
        let p = watcher.recv_publish().await;
        let after = connected.elapsed();
        assert_eq!(&p.payload[..], b"timed out");
        // The broker waits one and a half keep-alives (1.5 s) of silence, not just one.
        assert!(after >= Duration::from_millis(1200), "will after {after:?}");

        watcher.disconnect().await;
        silent.kill().await;
        server.shutdown(WAIT).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn persistent_session_resumed_after_reconnect() {
        let (server, port) = start_server().await;
        let mut o = options(port, "v4-persist");
        o.set_clean_session(false).set_manual_acks(true);
        let mut sub = Client::connect(o).await;
        assert!(!sub.session_present);
        sub.subscribe("ps/#", QoS::ExactlyOnce).await;

        let mut publisher = Client::connect(options(port, "v4-persist-pub")).await;
        publisher
            .publish("ps/inflight", QoS::AtLeastOnce, false, b"unacked")
            .await;
        let p = sub.recv_publish().await;
        assert_eq!((&p.payload[..], p.dup), (&b"unacked"[..], false));
        // Not acknowledged: the broker must send it again on the next connection.
        sub.kill().await;

        publisher
            .publish("ps/1", QoS::AtLeastOnce, false, b"one")
            .await;
        publisher
            .publish("ps/0", QoS::AtMostOnce, false, b"zero")
            .await;
        publisher
            .publish("ps/2", QoS::ExactlyOnce, false, b"two")
            .await;

        let mut o = options(port, "v4-persist");
        o.set_clean_session(false);
        let mut sub = Client::connect(o).await;
        assert!(sub.session_present, "session present after reconnect");
        let p = sub.recv_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos, p.dup),
            ("ps/inflight", &b"unacked"[..], QoS::AtLeastOnce, true)
        );
        let p = sub.recv_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos),
            ("ps/1", &b"one"[..], QoS::AtLeastOnce)
        );
        let p = sub.recv_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos),
            ("ps/2", &b"two"[..], QoS::ExactlyOnce)
        );
        // QoS 0 is not queued for an offline client by default.
        sub.expect_no_publish().await;

        // The subscription survived: no new SUBSCRIBE needed.
        publisher
            .publish("ps/live", QoS::ExactlyOnce, false, b"live")
            .await;
        let p = sub.recv_publish().await;
        assert_eq!(&p.payload[..], b"live");
        sub.disconnect().await;

        // A clean session discards it.
        let mut o = options(port, "v4-persist");
        o.set_clean_session(true);
        let sub = Client::connect(o).await;
        assert!(!sub.session_present);
        sub.disconnect().await;
        // Wait until the broker has handled that DISCONNECT; a CONNECT racing it is a
        // takeover, which `takeover_of_clean_session_does_not_resume_it` tests.
        let deadline = Instant::now() + WAIT;
        while server.broker.session("v4-persist").is_some() {
            assert!(Instant::now() < deadline, "clean session not discarded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut o = options(port, "v4-persist");
        o.set_clean_session(false);
        let mut sub = Client::connect(o).await;
        assert!(
            !sub.session_present,
            "the clean session discarded the old one"
        );
        publisher
            .publish("ps/after", QoS::AtLeastOnce, false, b"x")
            .await;
        sub.expect_no_publish().await;

        sub.disconnect().await;
        publisher.disconnect().await;
        server.shutdown(WAIT).await;
    }
    /// [MQTT-3.1.2-6]: the state of a clean session "MUST NOT be reused in any subsequent
    /// Session", also when a CleanSession=0 connection takes the client id over while the
    /// clean one is still connected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn takeover_of_clean_session_does_not_resume_it() {
        let (server, port) = start_server().await;
        let mut o = options(port, "v4-takeover");
        o.set_clean_session(true);
        let mut clean = Client::connect(o).await;
        clean.subscribe("takeover/#", QoS::AtLeastOnce).await;

        let mut o = options(port, "v4-takeover");
        o.set_clean_session(false);
        let mut next = Client::connect(o).await;
        assert!(
            !next.session_present,
            "CONNACK session present 1 after taking over a clean session"
        );
        let mut publisher = Client::connect(options(port, "v4-takeover-pub")).await;
        publisher
            .publish("takeover/x", QoS::AtLeastOnce, false, b"x")
            .await;
        next.expect_no_publish().await;

        clean.kill().await;
        next.disconnect().await;
        publisher.disconnect().await;
        server.shutdown(WAIT).await;
    }
}

/// The 5.0 API: `rumqttc::v5::{AsyncClient, MqttOptions}`.
mod v5 {
    use super::*;
    use bytes::Bytes;
    use rumqttc::v5::mqttbytes::v5::{
        ConnectReturnCode, Filter, LastWill, LastWillProperties, Packet, Publish,
        PublishProperties, RetainForwardRule, SubscribeReasonCode,
    };
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
    use rumqttc::Outgoing;

    /// One rumqttc 5.0 client with its event loop in a task.
    pub struct Client {
        pub client: AsyncClient,
        pub session_present: bool,
        events: mpsc::UnboundedReceiver<Result<Packet, String>>,
        buffered: VecDeque<Packet>,
        task: JoinHandle<()>,
    }

    pub fn options(port: u16, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    fn spawn(
        mut el: EventLoop,
    ) -> (
        mpsc::UnboundedReceiver<Result<Packet, String>>,
        JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    // Sent and flushed: stop here, so rumqttc does not reconnect.
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        (rx, task)
    }

    fn topic(p: &Publish) -> &str {
        std::str::from_utf8(&p.topic).unwrap()
    }

    impl Client {
        /// Connects and waits for a successful CONNACK.
        pub async fn connect(options: MqttOptions) -> Client {
            let (client, el) = AsyncClient::new(options, 64);
            let (events, task) = spawn(el);
            let mut c = Client {
                client,
                session_present: false,
                events,
                buffered: VecDeque::new(),
                task,
            };
            let Packet::ConnAck(ack) = c.next("CONNACK", |p| matches!(p, Packet::ConnAck(_))).await
            else {
                unreachable!()
            };
            assert_eq!(ack.code, ConnectReturnCode::Success);
            c.session_present = ack.session_present;
            c
        }

        /// The first incoming packet matching `pred`; others are kept for later calls.
        pub async fn next(&mut self, what: &str, pred: impl Fn(&Packet) -> bool) -> Packet {
            if let Some(i) = self.buffered.iter().position(&pred) {
                return self.buffered.remove(i).unwrap();
            }
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let got = tokio::time::timeout_at(deadline, self.events.recv())
                    .await
                    .unwrap_or_else(|_| {
                        panic!("no {what} within {WAIT:?}; got {:?}", self.buffered)
                    });
                match got {
                    Some(Ok(p)) if pred(&p) => return p,
                    Some(Ok(p)) => self.buffered.push_back(p),
                    Some(Err(e)) => panic!("connection failed while waiting for {what}: {e}"),
                    None => panic!("event loop ended while waiting for {what}"),
                }
            }
        }

        pub async fn recv_publish(&mut self) -> Publish {
            match self
                .next("PUBLISH", |p| matches!(p, Packet::Publish(_)))
                .await
            {
                Packet::Publish(p) => p,
                _ => unreachable!(),
            }
        }

        /// Asserts that no PUBLISH arrives within [`QUIET`].
        pub async fn expect_no_publish(&mut self) {
            let deadline = tokio::time::Instant::now() + QUIET;
            while let Ok(got) = tokio::time::timeout_at(deadline, self.events.recv()).await {
                match got {
                    Some(Ok(p)) => self.buffered.push_back(p),
                    Some(Err(e)) => panic!("connection failed: {e}"),
                    None => break,
                }
            }
            let publishes: Vec<_> = self
                .buffered
                .iter()
                .filter(|p| matches!(p, Packet::Publish(_)))
                .collect();
            assert!(publishes.is_empty(), "unexpected {publishes:?}");
        }

        /// Subscribes with `filter`'s options and returns the granted QoS.
        pub async fn subscribe_filter(&mut self, filter: Filter) -> QoS {
            let path = filter.path.clone();
            self.client.subscribe_many([filter]).await.unwrap();
            match self
                .next("SUBACK", |p| matches!(p, Packet::SubAck(_)))
                .await
            {
                Packet::SubAck(ack) => match ack.return_codes.as_slice() {
                    [SubscribeReasonCode::Success(q)] => *q,
                    other => panic!("SUBACK for {path}: {other:?}"),
                },
                _ => unreachable!(),
            }
        }

        pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> QoS {
            self.subscribe_filter(Filter::new(filter, qos)).await
        }

        /// Publishes and, for QoS 1 and 2, waits for the PUBACK or PUBCOMP.
        pub async fn publish_with(
            &mut self,
            topic: &str,
            qos: QoS,
            retain: bool,
            payload: &[u8],
            properties: PublishProperties,
        ) {
            self.client
                .publish_with_properties(topic, qos, retain, payload.to_vec(), properties)
                .await
                .unwrap();
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    self.next("PUBACK", |p| matches!(p, Packet::PubAck(_)))
                        .await;
                }
                QoS::ExactlyOnce => {
                    self.next("PUBREC", |p| matches!(p, Packet::PubRec(_)))
                        .await;
                    self.next("PUBCOMP", |p| matches!(p, Packet::PubComp(_)))
                        .await;
                }
            }
        }

        pub async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
            self.publish_with(topic, qos, retain, payload, PublishProperties::default())
                .await;
        }

        /// Sends DISCONNECT (reason 0x00) and waits for the event loop to end.
        pub async fn disconnect(mut self) {
            self.client.disconnect().await.unwrap();
            let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
            tokio::time::timeout(WAIT, task)
                .await
                .expect("event loop ends after DISCONNECT")
                .unwrap();
        }

        /// Drops the event loop and its socket without a DISCONNECT.
        pub async fn kill(mut self) {
            self.task.abort();
            let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
            let _ = task.await;
        }
    }

    impl Drop for Client {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pub_sub_at_qos_0_1_2() {
        let (server, port) = start_server().await;
        let mut sub = Client::connect(options(port, "v5-sub")).await;
        assert_eq!(
            sub.subscribe("qos/#", QoS::ExactlyOnce).await,
            QoS::ExactlyOnce
        );
        let mut sub1 = Client::connect(options(port, "v5-sub1")).await;
        assert_eq!(
            sub1.subscribe("qos/+", QoS::AtLeastOnce).await,
            QoS::AtLeastOnce
        );
        let mut publisher = Client::connect(options(port, "v5-pub")).await;

        let qoses = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
        for (i, qos) in qoses.into_iter().enumerate() {
            publisher
                .publish(&format!("qos/{i}"), qos, false, format!("m{i}").as_bytes())
                .await;
        }
        for (i, qos) in qoses.into_iter().enumerate() {
            let p = sub.recv_publish().await;
            assert_eq!(
                (topic(&p), &p.payload[..], p.qos, p.retain, p.dup),
                (
                    format!("qos/{i}").as_str(),
                    format!("m{i}").as_bytes(),
                    qos,
                    false,
                    false
                )
            );
            let p = sub1.recv_publish().await;
            let expected = if qos == QoS::ExactlyOnce {
                QoS::AtLeastOnce
            } else {
                qos
            };
            assert_eq!((topic(&p), p.qos), (format!("qos/{i}").as_str(), expected));
        }
        assert_eq!(
            publisher.subscribe("back", QoS::ExactlyOnce).await,
            QoS::ExactlyOnce
        );
        for qos in qoses {
            sub.publish("back", qos, false, b"reply").await;
            let p = publisher.recv_publish().await;
            assert_eq!((&p.payload[..], p.qos), (&b"reply"[..], qos));
        }
        sub.expect_no_publish().await;
        sub1.expect_no_publish().await;
        for c in [sub, sub1, publisher] {
            c.disconnect().await;
        }
        server.shutdown(WAIT).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retained_messages_and_retain_options() {
        let (server, port) = start_server().await;
        let mut publisher = Client::connect(options(port, "v5-ret-pub")).await;
        publisher
            .publish("ret/a", QoS::AtLeastOnce, true, b"old")
            .await;
        publisher
            .publish("ret/a", QoS::ExactlyOnce, true, b"new")
            .await;

        let mut sub = Client::connect(options(port, "v5-ret-sub")).await;
        sub.subscribe("ret/#", QoS::ExactlyOnce).await;
        let p = sub.recv_publish().await;
        assert_eq!(
            (topic(&p), &p.payload[..], p.qos, p.retain),
            ("ret/a", &b"new"[..], QoS::ExactlyOnce, true)
        );
        sub.expect_no_publish().await;

        // Retain handling 2: no retained messages on subscribe. Retain as published: a live
        // retained message keeps its flag; without it the flag is cleared.
        let mut keep = Client::connect(options(port, "v5-ret-keep")).await;
        let mut f = Filter::new("ret/#", QoS::AtLeastOnce);
        f.retain_forward_rule = RetainForwardRule::Never;
        f.preserve_retain = true;
        keep.subscribe_filter(f).await;
        keep.expect_no_publish().await;
        publisher
            .publish("ret/a", QoS::AtLeastOnce, true, b"live")
            .await;
        let p = keep.recv_publish().await;
        assert_eq!((&p.payload[..], p.retain), (&b"live"[..], true));
        let p = sub.recv_publish().await;
        assert_eq!((&p.payload[..], p.retain), (&b"live"[..], false));

        // An empty retained payload deletes it.
        publisher
            .publish("ret/a", QoS::AtLeastOnce, true, b"")
            .await;
        let mut late = Client::connect(options(port, "v5-ret-late")).await;
        late.subscribe("ret/#", QoS::AtLeastOnce).await;
        late.expect_no_publish().await;

        for c in [publisher, sub, keep, late] {
            c.disconnect().await;
        }
        server.shutdown(WAIT).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn will_with_properties_on_killed_connection() {
        let (server, port) = start_server().await;
        let mut watcher = Client::connect(options(port, "v5-will-watch")).await;
        watcher.subscribe("will/#", QoS::ExactlyOnce).await;

        // A normal DISCONNECT (reason 0x00) discards the will.
        let mut o = options(port, "v5-will-polite");
        o.set_last_will(LastWill::new(
            "will/polite",
            "gone",
            QoS::AtLeastOnce,
            false,
            None,
        ));
        Client::connect(o).await.disconnect().await;
        watcher.expect_no_publish().await;

        let props = LastWillProperties {
            delay_interval: None,
            payload_format_indicator: Some(1),
            message_expiry_interval: None,
            content_type: Some("text/plain".into()),
            response_topic: Some("will/ask".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
            user_properties: vec![
                ("who".into(), "v5-will-killed".into()),
                ("k".into(), "v".into()),
            ],
        };
        let mut o = options(port, "v5-will-killed");
        o.set_last_will(LastWill::new(
            "will/killed",
            "gone",
            QoS::ExactlyOnce,
            false,
            Some(props.clone()),
        ));
        Client::connect(o).await.kill().await;
        let p = watcher.recv_publish().await;
        assert_eq!(
            (topic(&p), &p.payload[..], p.qos, p.retain),
            ("will/killed", &b"gone"[..], QoS::ExactlyOnce, false)
        );
        let got = p.properties.expect("will properties are carried");
        assert_eq!(got.payload_format_indicator, props.payload_format_indicator);
        assert_eq!(got.content_type, props.content_type);
        assert_eq!(got.response_topic, props.response_topic);
        assert_eq!(got.correlation_data, props.correlation_data);
        assert_eq!(got.user_properties, props.user_properties);

        watcher.disconnect().await;
        server.shutdown(WAIT).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn persistent_session_resumed_after_reconnect() {
        let (server, port) = start_server().await;
        let persistent = |port| {
            let mut o = options(port, "v5-persist");
            o.set_clean_start(false)
                .set_session_expiry_interval(Some(60));
            o
        };
        let mut sub = Client::connect(persistent(port)).await;
        assert!(!sub.session_present);
        sub.subscribe("ps/#", QoS::ExactlyOnce).await;
        // A normal DISCONNECT keeps a session whose expiry interval is not 0.
        sub.disconnect().await;

        let mut publisher = Client::connect(options(port, "v5-persist-pub")).await;
        let props = PublishProperties {
            user_properties: vec![("seq".into(), "1".into())],
            ..Default::default()
        };
        publisher
            .publish_with("ps/1", QoS::AtLeastOnce, false, b"one", props.clone())
            .await;
        publisher
            .publish("ps/0", QoS::AtMostOnce, false, b"zero")
            .await;
        publisher
            .publish("ps/2", QoS::ExactlyOnce, false, b"two")
            .await;

        let mut sub = Client::connect(persistent(port)).await;
        assert!(sub.session_present, "session present after reconnect");
        let p = sub.recv_publish().await;
        assert_eq!(
            (topic(&p), &p.payload[..], p.qos),
            ("ps/1", &b"one"[..], QoS::AtLeastOnce)
        );
        assert_eq!(
            p.properties.map(|p| p.user_properties),
            Some(props.user_properties),
            "properties of a queued message are kept"
        );
        let p = sub.recv_publish().await;
        assert_eq!(
            (topic(&p), &p.payload[..], p.qos),
            ("ps/2", &b"two"[..], QoS::ExactlyOnce)
        );
        sub.expect_no_publish().await;
        publisher
            .publish("ps/live", QoS::AtLeastOnce, false, b"live")
            .await;
        assert_eq!(&sub.recv_publish().await.payload[..], b"live");

        // Killed this time: the session is kept all the same.
        sub.kill().await;
        publisher
            .publish("ps/3", QoS::AtLeastOnce, false, b"three")
            .await;
        let mut sub = Client::connect(persistent(port)).await;
        assert!(sub.session_present);
        assert_eq!(&sub.recv_publish().await.payload[..], b"three");

        sub.disconnect().await;
        publisher.disconnect().await;
        server.shutdown(WAIT).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn request_response_properties_forwarded() {
        let (server, port) = start_server().await;
        let mut responder = Client::connect(options(port, "v5-responder")).await;
        responder.subscribe("svc/echo", QoS::AtLeastOnce).await;
        let mut requester = Client::connect(options(port, "v5-requester")).await;
        requester
            .subscribe("reply/v5-requester", QoS::AtLeastOnce)
            .await;

        let request = PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: None,
            topic_alias: None,
            response_topic: Some("reply/v5-requester".into()),
            correlation_data: Some(Bytes::from_static(b"\xffreq-42")),
            // Order and repeated keys are part of what must be forwarded.
            user_properties: vec![
                ("k".into(), "1".into()),
                ("a".into(), "x".into()),
                ("k".into(), "2".into()),
            ],
            subscription_identifiers: vec![],
            content_type: Some("application/json".into()),
        };
        requester
            .publish_with(
                "svc/echo",
                QoS::AtLeastOnce,
                false,
                b"{\"q\":1}",
                request.clone(),
            )
            .await;

        let p = responder.recv_publish().await;
        assert_eq!(&p.payload[..], b"{\"q\":1}");
        let got = p.properties.expect("properties forwarded");
        assert_eq!(
            got.payload_format_indicator,
            request.payload_format_indicator
        );
        assert_eq!(got.response_topic, request.response_topic);
        assert_eq!(got.correlation_data, request.correlation_data);
        assert_eq!(got.user_properties, request.user_properties);
        assert_eq!(got.content_type, request.content_type);

        let reply = PublishProperties {
            correlation_data: got.correlation_data.clone(),
            ..Default::default()
        };
        responder
            .publish_with(
                got.response_topic.as_deref().unwrap(),
                QoS::AtLeastOnce,
                false,
                b"{\"a\":1}",
                reply,
            )
            .await;
        let p = requester.recv_publish().await;
        assert_eq!(
            (topic(&p), &p.payload[..]),
            ("reply/v5-requester", &b"{\"a\":1}"[..])
        );
        assert_eq!(
            p.properties.and_then(|p| p.correlation_data),
            request.correlation_data
        );

        responder.disconnect().await;
        requester.disconnect().await;
        server.shutdown(WAIT).await;
    }
}
