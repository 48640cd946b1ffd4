//! Running a node: `serve` (and `up`'s serving half) and `lambda`. Binding
//! or inheriting the listening socket (systemd socket activation), the
//! control plane on its own listener (`--admin-listen`), graceful
//! shutdown and `--idle-exit`.

use super::args::{DataArgs, NodeArgs, ServeArgs};
use anyhow::{Context, Result};
use sluice::cache::CacheConfig;
use sluice::engine::{Engine, EngineConfig};
use sluice::http::{self, AppState};
use sluice::inference::onnxruntime::Onnxruntime;
use sluice::node::Node;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A node over the store `data` names, its store checked.
pub async fn local_node(
    data: &DataArgs,
    engine: EngineConfig,
    cache: CacheConfig,
) -> Result<Arc<Node>> {
    let (node, reachable) = unchecked_node(data, engine, cache).await?;
    reachable.await?;
    Ok(node)
}

/// A node over the store `data` names, and the check that its store is
/// reachable (an S3 bucket's round trip), to run beside other start-up
/// work.
async fn unchecked_node(
    data: &DataArgs,
    engine: EngineConfig,
    cache: CacheConfig,
) -> Result<(Arc<Node>, impl Future<Output = Result<()>> + use<>)> {
    let location = data.location();
    let signing = data.signing_key()?;
    // Each takes milliseconds (the store's client, the engine's pool,
    // onnxruntime's library): side by side, for a shorter cold start.
    let onnxruntime = data.onnxruntime.clone();
    let (store, engine, onnxruntime) = tokio::join!(
        sluice::store::open_unchecked(&location),
        tokio::task::spawn_blocking(move || Engine::new(engine)),
        tokio::task::spawn_blocking(move || onnxruntime.map(|path| Onnxruntime::load(&path)))
    );
    let cannot_open = move || format!("cannot open the store at {location}");
    let (store, reachable) = store.with_context(cannot_open.clone())?;
    let reachable = async move { reachable.await.with_context(cannot_open) };
    let engine = engine
        .context("the engine's start-up task failed")?
        .context("cannot start the wasmtime engine")?;
    let mut node = Node::new(engine, store, cache).with_signing_key(signing);
    if let Some(library) = onnxruntime.context("the onnxruntime start-up task failed")? {
        node = node.with_onnxruntime(library?);
    }
    Ok((Arc::new(node), reachable))
}

/// Engine settings for one-shot CLI work: no need to reserve a pool.
pub fn cli_engine() -> EngineConfig {
    EngineConfig {
        pooling: Some(false),
        ..EngineConfig::default()
    }
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let node = &args.node;
    let node = local_node(&node.data, node.engine.config(), node.cache()).await?;
    args.node.start_background(&node)?;
    serve_node(node, &args, |_| {}).await
}

/// Serve Lambda events. An init failure (a bad SLUICE_STORE, say) is
/// reported to the runtime API's `/init/error` as well as returned.
pub async fn lambda(args: NodeArgs, started: std::time::Instant) -> Result<()> {
    let mut engine = args.engine.config();
    // The pool sized to the function: stage memory caps cannot exceed what
    // Lambda gave it, and an environment runs one event at a time (or
    // AWS_LAMBDA_MAX_CONCURRENCY), so a few slots each will do.
    if let Some(memory) = sluice::lambda::function_memory_bytes() {
        engine.max_memory_bytes = engine.max_memory_bytes.min(memory);
    }
    engine.max_instances = engine
        .max_instances
        .min(4 * sluice::lambda::max_concurrency());
    // The bucket check and the admin token's set-up are independent round
    // trips to the store: side by side. A bad store fails both; its own
    // error is the one reported.
    let init = async {
        let (node, reachable) = unchecked_node(&args.data, engine, args.cache()).await?;
        let (reachable, admitted) = tokio::join!(reachable, admit_admin(&node, false));
        reachable?;
        admitted?;
        Ok::<_, anyhow::Error>(node)
    };
    let node = match init.await {
        Ok(node) => node,
        Err(e) => {
            let e = if args.data.store.is_none() {
                e.context(
                    "no SLUICE_STORE is set: point it at the store, e.g. s3://BUCKET/PREFIX (a directory works too, but Lambda's file system is read-only outside /tmp)",
                )
            } else {
                e
            };
            sluice::lambda::report_init_error(&format!("{e:#}")).await;
            return Err(e);
        }
    };
    let state = Arc::new(AppState::new(node, args.http(), None));
    sluice::lambda::run(http::router(state), started).await?;
    Ok(())
}

/// Make sure an admin can reach the control plane: the token in
/// SLUICE_ADMIN_TOKEN, or (with `generate`, on a terminal's node) a new
/// one when the store has no admin yet, printed this once. Lambda only
/// takes the variable: its logs are no place for a secret.
async fn admit_admin(node: &Node, generate: bool) -> Result<()> {
    let admin = std::env::var("SLUICE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    if admin.is_none() && !generate {
        return Ok(());
    }
    let created = node
        .admit_admin(admin.as_deref())
        .await
        .context("cannot set up the admin token")?;
    if let Some(token) = created {
        tracing::warn!("no admin token in the store: created one, printed once on stderr");
        eprintln!(
            "\nadmin token (shown this once; the control plane needs it: export SLUICE_TOKEN=... or save it in ~/.config/sluice/token):\n{token}\n"
        );
    }
    Ok(())
}

/// Check the store honours conditional writes, and say so loudly if not:
/// without them two nodes moving one alias could overwrite each other.
async fn check_conditional_writes(node: &Node) -> Option<bool> {
    match node.store().check_conditional_writes().await {
        Ok(true) => Some(true),
        Ok(false) => {
            tracing::error!(
                store = %node.store().describe(),
                "this store ignores conditional writes (If-None-Match / If-Match): concurrent alias moves and deploys through different nodes may overwrite each other; use a store that supports them (AWS S3 does)"
            );
            Some(false)
        }
        Err(e) => {
            // Read-only credentials (a serving role) cannot probe; that is fine.
            tracing::info!(error = %e, "could not check the store for conditional writes");
            None
        }
    }
}

/// Bind (or take systemd's socket), report, and serve until Ctrl-C,
/// SIGTERM or `--idle-exit`: both planes on one listener, or the control
/// plane on `--admin-listen`.
pub async fn serve_node(
    node: Arc<Node>,
    args: &ServeArgs,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let http = args.node.http();
    let listener = match inherited_listener()? {
        Some(listener) => listener,
        None => bind(args.listen, "--listen").await?,
    };
    let admin = match args.admin_listen {
        Some(addr) => Some(bind(addr, "--admin-listen").await?),
        None => None,
    };
    let addr = listener.local_addr()?;
    let conditional_writes = check_conditional_writes(&node).await;
    admit_admin(&node, true).await?;
    tracing::info!(%addr, store = %node.store().describe(), "sluice listening");
    // Tests and scripts wait for these exact lines on stdout.
    println!("listening on http://{addr}");
    if let Some(admin) = &admin {
        let admin_addr = admin.local_addr()?;
        tracing::info!(%admin_addr, "control plane listening on its own address");
        println!("control plane on http://{admin_addr}");
    }
    on_ready(addr);
    let state = Arc::new(AppState::new(
        node.clone(),
        http.clone(),
        conditional_writes,
    ));
    let stats = state.node.stats().clone();
    let idle_exit = (args.idle_exit > 0).then(|| Duration::from_secs(args.idle_exit));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let trigger = async move {
        tokio::select! {
            () = shutdown_signal() => {}
            () = idle_for(&stats, idle_exit) => {
                tracing::info!(idle_secs = args.idle_exit, "no requests for the idle time: exiting (--idle-exit)");
            }
        }
        let _ = stop.send(true);
    };
    let (data, control) = match admin {
        Some(_) => (
            http::data_router(state.clone()),
            Some(http::control_router(state)),
        ),
        None => (http::router(state), None),
    };
    let serve_data = http::serve(listener, data, &http, until_stopped(stopped.clone()));
    let serve_control = async {
        match (admin, control) {
            (Some(listener), Some(router)) => {
                http::serve(listener, router, &http, until_stopped(stopped.clone())).await
            }
            _ => Ok(()),
        }
    };
    let (data, control, ()) = tokio::join!(serve_data, serve_control, trigger);
    // What was served since the last write still counts on the other nodes.
    node.watch_drift().await;
    data?;
    control?;
    Ok(())
}

async fn bind(addr: SocketAddr, flag: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}; is another process using it? pick another with {flag}")
    })
}

/// The listening socket systemd passed (socket activation: fd 3, with
/// LISTEN_FDS=1 and LISTEN_PID naming this process), if any.
fn inherited_listener() -> Result<Option<tokio::net::TcpListener>> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        == Some(std::process::id());
    let fds = std::env::var("LISTEN_FDS").ok();
    if !for_us || fds.is_none() {
        return Ok(None);
    }
    anyhow::ensure!(
        fds.as_deref() == Some("1"),
        "LISTEN_FDS={}: sluice takes exactly one socket from systemd (one ListenStream= in the .socket unit)",
        fds.unwrap_or_default()
    );
    #[cfg(unix)]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: systemd's protocol hands this process fd 3 as an open
        // listening socket (checked by LISTEN_PID above); nothing else here
        // owns it.
        let listener = unsafe { std::net::TcpListener::from_raw_fd(3) };
        listener
            .set_nonblocking(true)
            .context("the socket from systemd (fd 3) is not usable")?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .context("the socket from systemd (fd 3) is not a TCP listening socket")?;
        tracing::info!("serving on the socket systemd passed (socket activation)");
        Ok(Some(listener))
    }
    #[cfg(not(unix))]
    Ok(None)
}

/// Resolves once no request has been in flight or arrived for `idle`
/// (never when `idle` is `None`).
async fn idle_for(stats: &sluice::observe::Stats, idle: Option<Duration>) {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    let tick = (idle / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut seen = stats.http_requests.load(Relaxed);
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let requests = stats.http_requests.load(Relaxed);
        if requests != seen || stats.in_flight.load(Relaxed) > 0 {
            (seen, quiet_since) = (requests, tokio::time::Instant::now());
        } else if quiet_since.elapsed() >= idle {
            return;
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
