//! The per-connection task is most of an idle connection's memory (issue 4: at most 2 KiB
//! per idle connection). tokio allocates it as one 128-byte aligned cell holding the
//! future plus 96 bytes of header, scheduler and trailer; a future of at most 672 bytes
//! keeps that cell at 768 bytes (the next size is 896).

use std::sync::Arc;
use std::time::Duration;

use midge_broker::auth::ListenerAuth;
use midge_broker::Broker;
use midge_server::config::RateLimits;
use midge_server::driver::{drive, Closer, ConnSetup, DriverConfig};
use midge_server::limits::{Limits, Slots};

#[tokio::test]
async fn connection_future_fits_a_768_byte_task() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let broker = Arc::new(Broker::new(Default::default()));
    let cfg = Arc::new(DriverConfig {
        limits: Default::default(),
        connect_timeout: Duration::from_secs(1),
        tcp_keepalive: None,
        live: Arc::new(Limits::new(10, &RateLimits::default())),
    });
    // What the listener gives each connection: a slot in total and one on the listener.
    let permit = (
        Slots::new(1).try_take().expect("slot"),
        Slots::new(1).try_take(),
    );
    let future = drive(
        stream,
        addr,
        ConnSetup {
            broker,
            auth: Arc::new(ListenerAuth::open()),
            cert_identity: None,
            listener: Arc::from("mqtt://127.0.0.1:1883"),
        },
        cfg,
        &Closer::new(),
        permit,
    );
    let size = std::mem::size_of_val(&future);
    assert!(size <= 672, "the connection future grew to {size} bytes");
}
