//! What the interop tests share: a midge server in this process on a free port of 127.0.0.1.

use midge_server::{RunningServer, Server, ServerConfig};

/// Starts a broker with the default configuration on 127.0.0.1 and a free port, and returns
/// it with that port.
pub async fn start_server() -> (RunningServer, u16) {
    let config = ServerConfig {
        listeners: vec![midge_server::ListenerConfig::tcp(
            "127.0.0.1:0".parse().expect("a valid address"),
        )],
        ..ServerConfig::default()
    };
    let server = Server::bind(config)
        .await
        .expect("binding 127.0.0.1:0")
        .start();
    let port = server.local_addrs[0].port();
    (server, port)
}
