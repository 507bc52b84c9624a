//! The baseline: the least a WebSocket server can do on this machine.
//! It accepts connections with tokio-tungstenite, keeps a writer task and a
//! channel per connection (as any server that writes from elsewhere must),
//! and when a client sends `broadcast <frame>` writes `<frame>` to every
//! connection. No auth, no routing, no state store: the physical floor the
//! benchmarks' ratios are against. Its WebSocket buffers are the emulator's
//! (4 KiB read buffer, no write buffering).

use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Peers = Arc<Mutex<Vec<mpsc::UnboundedSender<Utf8Bytes>>>>;

/// Serves on `port` until killed; prints `listening <port>` when ready.
pub async fn run(port: u16) -> anyhow::Result<()> {
    // A deep accept queue, as the emulator's (a storm of connects must not wait for SYN retries).
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
    let listener: TcpListener = socket.listen(4096)?;
    println!("listening {}", listener.local_addr()?.port());
    let peers: Peers = Arc::default();
    loop {
        let (tcp, _) = listener.accept().await?;
        let peers = peers.clone();
        tokio::spawn(async move {
            // The emulator's buffer sizes, so memory per connection compares like with like.
            let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
            config.read_buffer_size = 4 * 1024;
            config.write_buffer_size = 0;
            let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else { return };
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = mpsc::unbounded_channel::<Utf8Bytes>();
            peers.lock().unwrap().push(tx);
            tokio::spawn(async move {
                while let Some(text) = rx.recv().await {
                    if sink.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
            });
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Text(text) = m
                    && let Some(frame) = text.strip_prefix("broadcast ")
                {
                    let frame = Utf8Bytes::from(frame.to_owned());
                    let all = peers.lock().unwrap().clone();
                    for p in all {
                        let _ = p.send(frame.clone());
                    }
                }
            }
        });
    }
}
