//! Test-only tools for the store: holding its writer busy on purpose, so a
//! test knows exactly what waits behind it, with no sleeps.

use tokio::task::JoinHandle;

use super::Sqlite;
use crate::server::store::StoreError;

/// A job that occupies the writer until released (or dropped).
pub struct Held {
    release: std::sync::mpsc::Sender<()>,
    done: JoinHandle<Result<(), StoreError>>,
}

impl Held {
    pub async fn release(self) {
        let _ = self.release.send(());
        self.done.await.unwrap().unwrap();
    }
}

/// Occupies the writer thread; returns once the job is running there.
pub async fn hold_writer(store: &Sqlite) -> Held {
    let (entered, running) = tokio::sync::oneshot::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let store = store.clone();
    let done = tokio::spawn(async move {
        store
            .write(
                move |_| {
                    let _ = entered.send(());
                    // Returns on release, or when the test drops `Held`.
                    let _ = released.recv();
                    Ok(())
                },
                |()| (),
            )
            .await
    });
    running.await.unwrap();
    Held { release, done }
}
