//! Who writes Kubernetes objects: the plain store (the API server, the
//! kubelets) or the control plane's fenced writer (the scheduler and the
//! controllers, whose writes carry the leader's fence token). Everything
//! that writes objects for several writers (Events now; the registry's
//! create, update and delete) is generic over this trait, so the same rules
//! apply whoever writes, and a control-plane write from a deposed leader is
//! refused whatever it writes.

use futures::future::BoxFuture;
use shoal_store::command::{Txn, TxnResult};
use shoal_store::{ClientError, ReadRequest, ReadResult, Store};

/// Reads and guarded writes of the store, as one writer does them.
pub trait Writer: Send + Sync + 'static {
    fn read(&self, req: ReadRequest) -> BoxFuture<'_, Result<ReadResult, ClientError>>;
    /// Commits `txn`; check `succeeded` for its compares.
    fn write(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResult, ClientError>>;
}

impl Writer for Store {
    fn read(&self, req: ReadRequest) -> BoxFuture<'_, Result<ReadResult, ClientError>> {
        Box::pin(Store::read(self, req))
    }

    fn write(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResult, ClientError>> {
        Box::pin(Store::write(self, txn))
    }
}
