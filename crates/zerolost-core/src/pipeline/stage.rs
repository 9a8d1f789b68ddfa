//! Where each delivery in flight is (claiming, in the handler, acknowledging, ...), so
//! that a shutdown which has to cut deliveries off can say where each one was stuck.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::MessageId;

tokio::task_local! {
    static CURRENT: Arc<Cell>;
}

/// One delivery's step and since when.
struct Cell {
    state: Mutex<(Option<MessageId>, &'static str, Instant)>,
}

/// A delivery that was still in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InFlight {
    /// Its message id, once read.
    pub id: Option<MessageId>,
    /// The step it was in.
    pub stage: &'static str,
    /// For how long.
    pub for_: Duration,
}

/// The steps of the deliveries a consumer runs.
#[derive(Default)]
pub(crate) struct Board {
    cells: Mutex<Vec<Weak<Cell>>>,
}

impl Board {
    /// Runs `work` as one tracked delivery.
    pub(crate) fn track<F: Future>(&self, work: F) -> impl Future<Output = F::Output> + use<F> {
        let cell = Arc::new(Cell {
            state: Mutex::new((None, "received", Instant::now())),
        });
        if let Ok(mut cells) = self.cells.lock() {
            if cells.len() >= 64 && cells.len().is_power_of_two() {
                cells.retain(|cell| cell.strong_count() > 0);
            }
            cells.push(Arc::downgrade(&cell));
        }
        CURRENT.scope(cell, work)
    }

    /// The deliveries still in flight, longest first.
    pub(crate) fn in_flight(&self) -> Vec<InFlight> {
        let Ok(cells) = self.cells.lock() else {
            return Vec::new();
        };
        let mut out: Vec<InFlight> = cells
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|cell| {
                let (id, stage, since) = *cell.state.lock().ok()?;
                Some(InFlight {
                    id,
                    stage,
                    for_: since.elapsed(),
                })
            })
            .collect();
        out.sort_by_key(|stuck| std::cmp::Reverse(stuck.for_));
        out
    }
}

/// Notes that the current delivery (if tracked) entered `stage`.
pub(crate) fn enter(stage: &'static str) {
    let _ = CURRENT.try_with(|cell| {
        if let Ok(mut state) = cell.state.lock() {
            state.1 = stage;
            state.2 = Instant::now();
        }
    });
}

/// Notes the current delivery's message id.
pub(crate) fn identify(id: MessageId) {
    let _ = CURRENT.try_with(|cell| {
        if let Ok(mut state) = cell.state.lock() {
            state.0 = Some(id);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tracked_delivery_shows_its_stage_until_it_ends() {
        let board = Arc::new(Board::default());
        let id = MessageId::new();
        let (entered, wait) = tokio::sync::oneshot::channel::<()>();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(board.track(async move {
            identify(id);
            enter("ack");
            let _ = entered.send(());
            let _ = released.await;
        }));
        wait.await.unwrap();
        let now = board.in_flight();
        assert_eq!(now.len(), 1);
        assert_eq!((now[0].id, now[0].stage), (Some(id), "ack"));
        release.send(()).unwrap();
        task.await.unwrap();
        assert!(board.in_flight().is_empty());
        enter("outside a tracked task: ignored");
    }
}
