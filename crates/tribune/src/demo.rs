//! `tribune demo`: a node with one room in which a synthetic speaker talks on a loop.

use std::time::Duration;

use anyhow::{Context, Result};
use tribune_client::{Api, AudioSource, SpeakOptions};
use tribune_server::{Server, ServerConfig};

/// A short synthesized speech clip (espeak-ng), Ogg Opus, stored small in the repository.
const CLIP: &[u8] = include_bytes!("../../../assets/demo-speech.ogg");

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(config: ServerConfig) -> Result<()> {
    crate::raise_fd_limit();
    let server = Server::bind(config.clone())
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    crate::tell_generated_key(&server);
    let key = server.state().config().rooms.api_keys.first().cloned();
    let url = format!("http://{}", server.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(server.run(async move {
        tokio::select! {
            _ = crate::shutdown_signal() => {}
            _ = stop_rx => {}
        }
    }));
    let api = Api::new(&url)?.with_api_key(key.clone());
    let room = api.create_room("Tribune demo").await?;
    let speaker = {
        let api = api.clone();
        let room = room.clone();
        tokio::spawn(async move {
            // The speaker reconnects if anything interrupts it, for as long as the demo runs.
            loop {
                let source = match AudioSource::from_file_bytes(CLIP, true) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!("demo clip unreadable: {e}");
                        return;
                    }
                };
                let opts = SpeakOptions {
                    room: room.id.clone(),
                    token: room.host_token.clone(),
                    source,
                    duration: None,
                    bitrate_bps: 48_000,
                    hear: false,
                };
                if let Err(e) = tribune_client::speak(&api, opts).await {
                    tracing::warn!("demo speaker stopped: {e}; restarting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    println!("Tribune demo is live at {url}");
    println!("room {}  (a synthetic speaker talks on a loop)", room.id);
    println!();
    println!("Listen with:");
    println!(
        "  cargo run --release -- listen --server {url} --room {} --seconds 10 --out demo.wav",
        room.id
    );
    println!();
    if let Some(key) = &key {
        println!("Start more rooms from the lobby with the operator key: {key}");
        println!();
    }
    println!("Ctrl-C stops the demo.");
    let result = node.await;
    speaker.abort();
    drop(stop_tx);
    result.context("node task")??;
    Ok(())
}
