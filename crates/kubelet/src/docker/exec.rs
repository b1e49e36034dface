//! `kubectl exec` under the docker runtime, through the engine: an exec
//! instance in the container (`POST /containers/{id}/exec`), started
//! attached; its output goes to the client as stdout and stderr (one
//! stream on a terminal), the client's stdin and terminal size come back
//! as [`Input`]s, and its exit code (`GET /exec/{id}/json`) ends the
//! stream. The client going away ends the attachment.

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use futures::StreamExt;
use shoal_fabric::actor::Sink;
use shoal_kubelet_proto::{ExecEvent, Input};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::engine::Engine;

/// Runs `command` in engine container `container`, streaming into `sink`.
pub async fn run(
    engine: Engine,
    container: String,
    command: Vec<String>,
    tty: bool,
    mut input: Option<mpsc::Receiver<Input>>,
    sink: Sink<ExecEvent>,
) {
    if command.is_empty() {
        return sink.end("exec: no command").await;
    }
    let docker = engine.api();
    let options = CreateExecOptions {
        cmd: Some(command),
        attach_stdin: Some(input.is_some()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(tty),
        // As the container runtimes do for a terminal: a TERM it can use.
        env: tty.then(|| vec!["TERM=xterm".to_string()]),
        ..Default::default()
    };
    let exec = match docker.create_exec(&container, options).await {
        Ok(e) => e.id,
        Err(e) => return sink.end(&format!("exec: {e}")).await,
    };
    let start = StartExecOptions {
        detach: false,
        tty,
        output_capacity: None,
    };
    let (mut output, mut writer) = match docker.start_exec(&exec, Some(start)).await {
        Ok(StartExecResults::Attached { output, input }) => (output, Some(input)),
        Ok(StartExecResults::Detached) => return sink.end("exec: the engine detached it").await,
        Err(e) => return sink.end(&format!("exec: {e}")).await,
    };
    loop {
        let next_input = async {
            match input.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(LogOutput::StdErr { message })) => {
                    let e = ExecEvent::Stderr(serde_bytes::ByteBuf::from(message.to_vec()));
                    if sink.send(&e).await.is_err() {
                        return;
                    }
                }
                Some(Ok(out)) => {
                    let e = ExecEvent::Stdout(serde_bytes::ByteBuf::from(out.into_bytes().to_vec()));
                    if sink.send(&e).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => return sink.end(&format!("exec: {e}")).await,
                None => break,
            },
            i = next_input => match i {
                Some(Input::Stdin(bytes)) => {
                    if let Some(w) = writer.as_mut() {
                        if w.write_all(&bytes).await.is_err() {
                            writer = None;
                        }
                    }
                }
                // The command sees the end of its stdin.
                Some(Input::CloseStdin) | None => {
                    if let Some(mut w) = writer.take() {
                        let _ = w.shutdown().await;
                    }
                    input = None;
                }
                Some(Input::Resize { width, height }) => {
                    let _ = docker
                        .resize_exec(&exec, ResizeExecOptions { height, width })
                        .await;
                }
            },
            _ = sink.closed() => return,
        }
    }
    let code = docker
        .inspect_exec(&exec)
        .await
        .ok()
        .and_then(|i| i.exit_code)
        .unwrap_or(128);
    let _ = sink
        .send(&ExecEvent::Exit(i32::try_from(code).unwrap_or(128)))
        .await;
    sink.end("exited").await;
}
