//! Single flight: identical computations asked together run once. The first
//! caller computes; the others wait for its result, each until its own
//! caller goes away ([`Abandon`]). When the computing caller goes away and
//! gives up, a waiter computes in its place.
//!
//! Waiting is on a condition variable that the computation's end and the
//! waiter's abandonment both signal: nothing polls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

/// Set when the caller of a computation has gone (its deadline passed, its
/// client cancelled): the computation stops at its next check, and whoever
/// waits on its behalf is woken.
#[derive(Default)]
pub struct Abandon {
    set: AtomicBool,
    /// Who to wake when it is set, by registration.
    wakers: Mutex<Vec<(u64, Waker)>>,
    registered: AtomicU64,
}

type Waker = Arc<dyn Fn() + Send + Sync>;

impl Abandon {
    pub fn new() -> Abandon {
        Abandon::default()
    }

    /// An abandonment that has already happened (for tests and callers that
    /// only want what is kept).
    pub fn already() -> Abandon {
        let abandon = Abandon::default();
        abandon.set.store(true, Ordering::Relaxed);
        abandon
    }

    /// The caller has gone: stop, and wake whoever waits for it.
    pub fn set(&self) {
        self.set.store(true, Ordering::Release);
        let wakers: Vec<Waker> = self.wakers.lock().iter().map(|(_, w)| w.clone()).collect();
        for wake in wakers {
            wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// The flag the model's simulations check between days.
    pub fn flag(&self) -> &AtomicBool {
        &self.set
    }

    /// Calls `wake` when this is set, until the returned registration is
    /// dropped.
    fn on_set(&self, wake: Waker) -> Registration<'_> {
        let id = self.registered.fetch_add(1, Ordering::Relaxed);
        self.wakers.lock().push((id, wake));
        Registration { abandon: self, id }
    }
}

struct Registration<'a> {
    abandon: &'a Abandon,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.abandon.wakers.lock().retain(|(id, _)| *id != self.id);
    }
}

/// One computation under way that callers with the same question wait for.
pub(super) struct Flight<T> {
    /// `Some` once it ended: the result, or `None` if it was given up.
    ended: Mutex<Option<Option<T>>>,
    done: Condvar,
}

impl<T> Default for Flight<T> {
    fn default() -> Self {
        Flight {
            ended: Mutex::new(None),
            done: Condvar::new(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Flight<T> {
    pub(super) fn end(&self, result: Option<T>) {
        *self.ended.lock() = Some(result);
        self.done.notify_all();
    }

    /// Wakes the waiters to look again. Taking the lock first means a
    /// waiter that has just checked is already waiting, so none misses it.
    fn wake(&self) {
        let _ended = self.ended.lock();
        self.done.notify_all();
    }

    /// Waits for the computation: `Ok(result)` when it ended (`None` if it
    /// was given up), `Err(())` once `abandoned` is set meanwhile.
    fn wait(self: &Arc<Self>, abandoned: &Abandon) -> Result<Option<T>, ()> {
        let flight = self.clone();
        let _registration = abandoned.on_set(Arc::new(move || flight.wake()));
        let mut ended = self.ended.lock();
        loop {
            if let Some(result) = &*ended {
                return Ok(result.clone());
            }
            if abandoned.is_set() {
                return Err(());
            }
            self.done.wait(&mut ended);
        }
    }
}

/// Computations under way, by question.
pub(super) type Flights<K, T> = Mutex<HashMap<K, Arc<Flight<T>>>>;

/// How a caller that went away left a shared computation.
pub(super) enum Gone {
    /// It was computing, and gave up (and counted it).
    Computing,
    /// It was waiting for another's.
    Waiting,
}

/// The result for `key`: kept (`kept`, looked at under the flights lock),
/// or computed once by `compute` (which keeps it before it returns) while
/// other callers with the same key wait for it. A caller whose `abandoned`
/// is set stops waiting; when the computing caller gives up, a waiter
/// computes in its place.
pub(super) fn shared<K, T>(
    flights: &Flights<K, T>,
    key: &K,
    kept: impl Fn() -> Option<T>,
    compute: impl Fn() -> Option<T>,
    abandoned: &Abandon,
) -> Result<T, Gone>
where
    K: Clone + Eq + std::hash::Hash,
    T: Clone + Send + Sync + 'static,
{
    loop {
        let (flight, first) = {
            let mut under_way = flights.lock();
            // Under the flights lock: a computation keeps its result before
            // it leaves the flights.
            if let Some(result) = kept() {
                return Ok(result);
            }
            match under_way.get(key) {
                Some(flight) => (flight.clone(), false),
                None => {
                    let flight = Arc::new(Flight::default());
                    under_way.insert(key.clone(), flight.clone());
                    (flight, true)
                }
            }
        };
        if first {
            let result = compute();
            flights.lock().remove(key);
            flight.end(result.clone());
            return result.ok_or(Gone::Computing);
        }
        match flight.wait(abandoned) {
            Ok(Some(result)) => return Ok(result),
            // Its caller went and it gave up: ask again.
            Ok(None) => continue,
            Err(()) => return Err(Gone::Waiting),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// A waiter is woken the moment its caller goes, not at its next poll.
    #[test]
    fn a_waiter_whose_caller_goes_is_woken_at_once() {
        let flight: Arc<Flight<u32>> = Arc::new(Flight::default());
        let abandon = Arc::new(Abandon::new());
        let waiting = {
            let (flight, abandon) = (flight.clone(), abandon.clone());
            std::thread::spawn(move || {
                let result = flight.wait(&abandon);
                (result, Instant::now())
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let set_at = Instant::now();
        abandon.set();
        let (result, woke_at) = waiting.join().unwrap();
        assert_eq!(result, Err(()));
        assert!(woke_at >= set_at);
        assert!(
            abandon.wakers.lock().is_empty(),
            "the waiter's registration is gone with it"
        );
    }

    /// A waiter gets the computation's result when it ends.
    #[test]
    fn a_waiter_gets_the_result() {
        let flight: Arc<Flight<u32>> = Arc::new(Flight::default());
        let waiting = {
            let flight = flight.clone();
            std::thread::spawn(move || flight.wait(&Abandon::new()))
        };
        std::thread::sleep(Duration::from_millis(50));
        flight.end(Some(7));
        assert_eq!(waiting.join().unwrap(), Ok(Some(7)));
    }
}
