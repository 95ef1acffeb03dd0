//! SendCommand for many cells at once, and one ListCommandInvocations poll per command for all of
//! its instances.
//!
//! Cells whose agents come online in the same registry tick ask for the same command within
//! milliseconds: requests are gathered for a moment and those with the same document, text and
//! time limit go out in one SendCommand of up to 50 instances (SSM's most). SSM refuses a whole call
//! when one of its instances is not online (`InvalidInstanceId`): that batch is sent again one
//! instance at a time, so that only the instance at fault is told. Each cell then calls
//! GetCommandInvocation once, for its output, when the shared poll shows its invocation ended.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::super::api::{Api, ApiError};
use super::super::ssm::Ssm;
use super::for_good;

/// How long requests are gathered before they go out together.
const GATHER: Duration = Duration::from_millis(250);
/// SSM's most instance ids in one SendCommand.
const IDS_PER_COMMAND: usize = 50;
/// How often a command's invocations are listed while some have not ended.
const POLL: Duration = Duration::from_secs(1);
/// SSM's least delivery timeout: how long a command waits for an agent that is away (rebooting).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// SSM's answer when an instance is not a managed instance online now.
pub const INVALID_INSTANCE: &str = "InvalidInstanceId";

/// The statuses after which an invocation changes no more.
const FINAL: [&str; 4] = ["Success", "Failed", "TimedOut", "Cancelled"];

/// One command for one instance, as a cell asks for it.
pub struct Request {
    pub instance: String,
    /// `AWS-RunShellScript` or `AWS-RunPowerShellScript`.
    pub document: &'static str,
    pub text: String,
    /// The command's own time limit, in seconds (the document's `executionTimeout`).
    pub execution_timeout: u64,
    pub reply: oneshot::Sender<Result<Sent, ApiError>>,
}

/// A command SSM took: its id, and its invocations' statuses as the shared poll sees them.
pub struct Sent {
    pub command_id: String,
    pub statuses: watch::Receiver<Statuses>,
}

#[derive(Debug, Clone, Default)]
pub struct Statuses {
    /// Instance id -> its invocation's status (`Pending`, `InProgress`, `Success`...).
    pub by_instance: HashMap<String, String>,
    pub last_error: Option<ApiError>,
}

impl Statuses {
    pub fn ended(&self, instance: &str) -> bool {
        self.by_instance.get(instance).is_some_and(|s| FINAL.contains(&s.as_str()))
    }

    /// SSM refused the listing for good (a permission): no status will come.
    pub fn refused(&self) -> Option<&ApiError> {
        self.last_error.as_ref().filter(|e| for_good(e))
    }
}

/// What every batch needs: the clients, and the run's id for the commands' comment.
struct Context {
    api: Arc<Api>,
    ssm: Arc<Ssm>,
    comment: String,
}

pub struct Dispatcher {
    tx: mpsc::UnboundedSender<Request>,
}

impl Dispatcher {
    /// Starts the gathering task; it ends when the dispatcher is dropped.
    pub fn start(api: Arc<Api>, ssm: Arc<Ssm>, run_id: &str) -> Dispatcher {
        let (tx, rx) = mpsc::unbounded_channel();
        // SSM keeps a comment of at most 100 characters; a run id is far shorter.
        let comment: String = format!("amiprobe run {run_id}").chars().take(100).collect();
        tokio::spawn(gather(Arc::new(Context { api, ssm, comment }), rx));
        Dispatcher { tx }
    }

    /// Sends `request` with whatever else is asked for at the same moment.
    pub fn send(&self, request: Request) {
        // The task ends only with the dispatcher: a closed channel drops the reply, which says so.
        let _ = self.tx.send(request);
    }
}

/// Gathers requests for [`GATHER`] after the first, then sends them in batches.
async fn gather(ctx: Arc<Context>, mut rx: mpsc::UnboundedReceiver<Request>) {
    while let Some(first) = rx.recv().await {
        let mut gathered = vec![first];
        let until = Instant::now() + GATHER;
        while let Ok(Some(next)) = tokio::time::timeout_at(until, rx.recv()).await {
            gathered.push(next);
        }
        let mut groups: BTreeMap<(&'static str, String, u64), Vec<Request>> = BTreeMap::new();
        for request in gathered {
            let key = (request.document, request.text.clone(), request.execution_timeout);
            groups.entry(key).or_default().push(request);
        }
        for mut group in groups.into_values() {
            while !group.is_empty() {
                let batch: Vec<Request> = group.drain(..group.len().min(IDS_PER_COMMAND)).collect();
                tokio::spawn(dispatch(ctx.clone(), batch));
            }
        }
    }
}

/// Sends one batch. What one instance can spoil for all (one not online, one of another platform)
/// sends each alone, so that only that one is told; a refusal of the caller is everyone's.
async fn dispatch(ctx: Arc<Context>, batch: Vec<Request>) {
    let mut refused = send_batch(&ctx, batch).await;
    if refused.len() > 1 && !for_good(&refused[0].1) && !refused[0].1.transient {
        for (request, _) in std::mem::take(&mut refused) {
            refused.extend(send_batch(&ctx, vec![request]).await);
        }
    }
    for (request, error) in refused {
        let _ = request.reply.send(Err(error));
    }
}

/// One SendCommand for `batch` (all of one document, text and limit); on success each request gets
/// the command and its invocations are polled. What SSM refused comes back with why.
async fn send_batch(ctx: &Arc<Context>, batch: Vec<Request>) -> Vec<(Request, ApiError)> {
    let Some(first) = batch.first() else { return Vec::new() };
    let ids: Vec<String> = batch.iter().map(|r| r.instance.clone()).collect();
    let (document, text, limit) = (first.document, first.text.clone(), first.execution_timeout);
    let (api, ssm) = (&ctx.api, &ctx.ssm);
    let sent = api
        .call(&ssm.bucket, "SendCommand", || {
            ssm.client
                .send_command()
                .set_instance_ids(Some(ids.clone()))
                .document_name(document)
                .parameters("commands", vec![text.clone()])
                .parameters("executionTimeout", vec![limit.to_string()])
                .timeout_seconds(DELIVERY_TIMEOUT.as_secs() as i32)
                // Each cell's command is its own: one failing must not stop the others' (SSM's
                // default MaxErrors of 0 would), nor any wait for a concurrency slot.
                .max_errors("100%")
                .max_concurrency("100%")
                .comment(&ctx.comment)
                .send()
        })
        .await;
    let command_id = match sent.map(|out| out.command().and_then(|c| c.command_id()).map(str::to_string)) {
        Ok(Some(id)) => id,
        Ok(None) => {
            let e = ApiError::unsent("SendCommand", "SSM answered without a command id".into());
            return batch.into_iter().map(|r| (r, e.clone())).collect();
        }
        Err(e) => return batch.into_iter().map(|r| (r, e.clone())).collect(),
    };
    let (tx, rx) = watch::channel(Statuses::default());
    for request in batch {
        let _ = request.reply.send(Ok(Sent { command_id: command_id.clone(), statuses: rx.clone() }));
    }
    drop(rx);
    // SSM ends a command by its own limits: its delivery timeout, then its execution timeout.
    let deadline = Instant::now() + DELIVERY_TIMEOUT + Duration::from_secs(limit) + Duration::from_secs(60);
    tokio::spawn(poll(ctx.clone(), command_id, ids, tx, deadline));
    Vec::new()
}

/// Lists the command's invocations until all have ended, every cell stopped waiting, or `deadline`.
async fn poll(ctx: Arc<Context>, command_id: String, ids: Vec<String>, tx: watch::Sender<Statuses>, deadline: Instant) {
    loop {
        tokio::time::sleep(POLL).await;
        if tx.is_closed() || Instant::now() > deadline {
            return;
        }
        let listed = list(&ctx, &command_id).await;
        tx.send_modify(|statuses| match listed {
            Ok(found) => {
                statuses.by_instance.extend(found);
                statuses.last_error = None;
            }
            Err(e) => statuses.last_error = Some(e),
        });
        if ids.iter().all(|id| tx.borrow().ended(id)) {
            return;
        }
    }
}

/// The status of each of the command's invocations (right after SendCommand, SSM may list none yet).
async fn list(ctx: &Context, command_id: &str) -> Result<HashMap<String, String>, ApiError> {
    let (api, ssm) = (&ctx.api, &ctx.ssm);
    let mut found = HashMap::new();
    let mut token: Option<String> = None;
    loop {
        let next = token.clone();
        let out = api
            .call(&ssm.bucket, "ListCommandInvocations", || {
                ssm.client
                    .list_command_invocations()
                    .command_id(command_id)
                    .max_results(IDS_PER_COMMAND as i32)
                    .set_next_token(next.clone())
                    .send()
            })
            .await?;
        for invocation in out.command_invocations() {
            if let (Some(id), Some(status)) = (invocation.instance_id(), invocation.status()) {
                found.insert(id.to_string(), status.as_str().to_string());
            }
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(found);
        }
    }
}
