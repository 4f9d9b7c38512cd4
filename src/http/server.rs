//! The HTTP server: accepts connections and serves the router on each, with
//! a header timeout (a client that sends its request headers slowly, or a
//! kept-alive connection that sends nothing, is closed once it passes), and
//! graceful shutdown (no new connections; in-flight requests finish).
//!
//! warp's own `serve` sets no timer, so hyper's header timeout never fires
//! there: a client sending a byte a second would hold its connection (and a
//! file descriptor) for as long as it liked. HTTP/1.1 only: warp also took
//! HTTP/2 without TLS (prior knowledge), which no client of the service
//! uses, whose connections no header timeout covers, and whose detection
//! waited without a limit for a first byte.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// Serves `router` on `listener` until `shutdown` completes, then waits for
/// the open connections to finish their requests (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: BoxedFilter<(Response,)>,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                accept_failed(&error).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(warp::service(router.clone()));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                // Timeouts, resets and malformed requests: the client's doing.
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A failed accept: a reset before it was taken is nothing; running out of
/// file descriptors is worth a pause, so that closing connections free some.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection; pausing a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
