//! The frame of a `zerolost` process: logging to stderr, the async runtime, exit codes.

use std::process::ExitCode;
use std::time::Duration;

use zerolost_core::Error;

/// Log filter of the operator commands: lapin logs every dropped connection at ERROR and a
/// returned message with its payload at WARN (zerolost reports and retries them itself), so
/// it is off; the RocketMQ client logs every route refresh and reconnect at WARN.
pub const QUIET_CLIENTS: &str =
    "lapin=off,rocketmq_client_rust=error,rocketmq_transport=error,rocketmq_runtime=error";

/// Sets up logging (`ZEROLOST_LOG`, else `default_filter`), runs `command` on a
/// multi-threaded runtime and turns its result into the exit code (2 on an error).
pub fn run<F>(default_filter: &str, command: F) -> ExitCode
where
    F: Future<Output = Result<ExitCode, Error>>,
{
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZEROLOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("zerolost: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(command);
    // Dropping a runtime waits without limit for blocking work (a client's thread stuck on
    // a dead socket); the command is done, so the exit waits 5 s at most.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zerolost: {e}");
            ExitCode::from(2)
        }
    }
}
