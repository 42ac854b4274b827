//! The node's admission state: the gate (capacity, rate, waiting room), the proof-of-work
//! replay guard and attack meter, behind short locks. The decisions themselves are made by
//! `tribune_core::admission`; this module holds the clock and the settings.

use std::time::Instant;

use parking_lot::Mutex;
use tribune_core::admission::{AttackMeter, Decision, Gate, GateStats, ReplayGuard};

pub use crate::config::AdmissionConfig;

/// The admission state of one node.
#[derive(Debug)]
pub struct Admission {
    config: AdmissionConfig,
    epoch: Instant,
    gate: Mutex<Gate>,
    guard: Mutex<ReplayGuard>,
    meter: Mutex<AttackMeter>,
}

impl Admission {
    /// Fresh state: an empty queue, no attack.
    pub fn new(config: AdmissionConfig) -> Self {
        Admission {
            gate: Mutex::new(Gate::new(config.gate, 0)),
            guard: Mutex::new(ReplayGuard::new(config.pow_max_in_flight)),
            meter: Mutex::new(AttackMeter::new(
                config.pow_threshold,
                config.pow_cool_down_s,
            )),
            epoch: Instant::now(),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Microseconds on the gate's monotonic clock.
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// A fresh join with `listeners` connected to the node.
    pub fn join(&self, listeners: u64) -> Decision {
        let now = self.now_us();
        self.gate.lock().join(now, listeners)
    }

    /// A join with queue number `number`.
    pub fn rejoin(&self, listeners: u64, number: u64) -> Decision {
        let now = self.now_us();
        self.gate.lock().rejoin(now, listeners, number)
    }

    /// A listener connected (its held seat is now counted among the listeners).
    pub fn connected(&self) {
        let now = self.now_us();
        self.gate.lock().connected(now);
    }

    /// A listener coming back with its listen ticket (never queued).
    pub fn resume(&self) -> Decision {
        self.gate.lock().resume()
    }

    /// Counters of the gate.
    pub fn stats(&self) -> GateStats {
        self.gate.lock().stats()
    }

    /// The difficulty to ask of a join that brings no proof (0: none), counting it.
    pub fn difficulty_for_unproven(&self, now_s: u64) -> u8 {
        if self.config.pow_threshold == 0 {
            return 0;
        }
        let mut m = self.meter.lock();
        m.count(now_s);
        m.bits(now_s)
    }

    /// The replay guard of solved challenges.
    pub fn guard(&self) -> &Mutex<ReplayGuard> {
        &self.guard
    }
}
