//! `kubectl exec` under the docker runtime, through the engine: an exec
//! instance in the container (`POST /containers/{id}/exec`), started
//! attached; its output goes to the client as stdout and stderr (one
//! stream on a terminal), the client's stdin and terminal size come back
//! as [`Input`]s, and its exit code (`GET /exec/{id}/json`) ends the
//! stream. The client going away ends the attachment. `kubectl attach`
//! is the same relay on the container's own process (`attach`).

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
    input: Option<mpsc::Receiver<Input>>,
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
    let (output, writer) = match docker.start_exec(&exec, Some(start)).await {
        Ok(StartExecResults::Attached { output, input }) => (output, Some(input)),
        Ok(StartExecResults::Detached) => return sink.end("exec: the engine detached it").await,
        Err(e) => return sink.end(&format!("exec: {e}")).await,
    };
    let resize = |width, height| {
        let (docker, exec) = (docker.clone(), exec.clone());
        async move {
            let _ = docker
                .resize_exec(&exec, ResizeExecOptions { height, width })
                .await;
        }
    };
    match pump(output, writer, input, &sink, resize).await {
        Ok(()) => {}
        Err(Some(why)) => return sink.end(&format!("exec: {why}")).await,
        Err(None) => return,
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

/// `kubectl attach`: the engine container `container`'s own process, its
/// output from now on and, when the container keeps its stdin open
/// (`stdin: true` in its spec), the client's stdin; its exit code ends
/// the stream. The client going away detaches; the container runs on.
pub async fn attach(
    engine: Engine,
    container: String,
    input: Option<mpsc::Receiver<Input>>,
    sink: Sink<ExecEvent>,
) {
    use bollard::query_parameters::{
        AttachContainerOptionsBuilder, ResizeContainerTTYOptionsBuilder,
    };
    let docker = engine.api().clone();
    let options = AttachContainerOptionsBuilder::new()
        .stdin(input.is_some())
        .stdout(true)
        .stderr(true)
        .stream(true)
        .logs(false)
        .build();
    let attached = match docker.attach_container(&container, Some(options)).await {
        Ok(a) => a,
        Err(e) => return sink.end(&format!("attach: {e}")).await,
    };
    let writer = input.is_some().then_some(attached.input);
    let resize = |width: u16, height: u16| {
        let (docker, container) = (docker.clone(), container.clone());
        async move {
            let options = ResizeContainerTTYOptionsBuilder::new()
                .w(i32::from(width))
                .h(i32::from(height))
                .build();
            let _ = docker.resize_container_tty(&container, options).await;
        }
    };
    match pump(attached.output, writer, input, &sink, resize).await {
        Ok(()) => {}
        Err(Some(why)) => return sink.end(&format!("attach: {why}")).await,
        Err(None) => return,
    }
    // The process ended: its exit code, once the engine has it.
    let mut wait = docker.wait_container(&container, None);
    let _ = wait.next().await;
    let code = docker
        .inspect_container(&container, None)
        .await
        .ok()
        .and_then(|i| i.state?.exit_code)
        .unwrap_or(128);
    let _ = sink
        .send(&ExecEvent::Exit(i32::try_from(code).unwrap_or(128)))
        .await;
    sink.end("exited").await;
}

/// Relays `output` to `sink` and the client's `input` to `writer` (and
/// its terminal sizes to `resize`) until the output ends (Ok), the client
/// goes (Err(None)) or the engine fails (Err, why).
async fn pump<F, Fut>(
    mut output: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    mut writer: Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
    mut input: Option<mpsc::Receiver<Input>>,
    sink: &Sink<ExecEvent>,
    resize: F,
) -> Result<(), Option<String>>
where
    F: Fn(u16, u16) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
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
                        return Err(None);
                    }
                }
                Some(Ok(out)) => {
                    let e = ExecEvent::Stdout(serde_bytes::ByteBuf::from(out.into_bytes().to_vec()));
                    if sink.send(&e).await.is_err() {
                        return Err(None);
                    }
                }
                Some(Err(e)) => {
                    return Err(Some(format!("the engine: {e}")));
                }
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
                Some(Input::Resize { width, height }) => resize(width, height).await,
            },
            _ = sink.closed() => return Err(None),
        }
    }
    Ok(())
}

/// Runs `argv` in engine container `container` for a probe or hook:
/// Ok when it exits 0; its output is read and dropped.
pub async fn run_quiet(engine: Engine, container: String, argv: Vec<String>) -> Result<(), String> {
    let docker = engine.api();
    let options = CreateExecOptions {
        cmd: Some(argv.clone()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec = docker
        .create_exec(&container, options)
        .await
        .map_err(|e| format!("exec {argv:?}: {e}"))?
        .id;
    match docker.start_exec(&exec, None).await {
        Ok(StartExecResults::Attached { mut output, .. }) => {
            while let Some(Ok(_)) = output.next().await {}
        }
        Ok(StartExecResults::Detached) => {}
        Err(e) => return Err(format!("exec {argv:?}: {e}")),
    }
    let code = docker
        .inspect_exec(&exec)
        .await
        .map_err(|e| format!("exec {argv:?}: {e}"))?
        .exit_code
        .unwrap_or(128);
    if code == 0 {
        Ok(())
    } else {
        Err(format!("command {:?} exited with {code}", argv.join(" ")))
    }
}

/// The probe exec hook of engine container `container`.
pub fn hook(engine: Engine, container: String) -> crate::process::probe::ExecHook {
    std::sync::Arc::new(move |argv| Box::pin(run_quiet(engine.clone(), container.clone(), argv)))
}
