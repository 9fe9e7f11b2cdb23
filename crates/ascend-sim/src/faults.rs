//! Fault injection and the per-organization rate limiter.

use std::time::Instant;

use crate::control::{FaultConfig, FaultKind};
use crate::hash::{SplitMix, hash3};
use crate::resource::Resource;

/// What to do to one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Error5xx(u16),
    RateLimited(u64),
    Slow(u64),
    Timeout,
    Truncated,
    Malformed,
    Unauthorized,
    /// Handle the call, then lose the answer (`Some`: this 5xx at once;
    /// `None`: like a timeout).
    LostReply(Option<u16>),
}

/// An organization's fault configuration and the dice that apply its rates.
#[derive(Debug)]
pub(crate) struct FaultState {
    pub(crate) config: FaultConfig,
    rng: SplitMix,
    /// Alternates the kinds of malformed bodies.
    pub(crate) malformed_count: u64,
}

const FAULT_STREAM: u64 = 0xFA;

impl FaultState {
    pub(crate) fn new(org_seed: u64) -> Self {
        Self {
            config: FaultConfig::default(),
            rng: SplitMix::new(hash3(org_seed, FAULT_STREAM, 0)),
            malformed_count: 0,
        }
    }

    /// Replaces the configuration after checking it.
    pub(crate) fn set(&mut self, org_seed: u64, config: FaultConfig) -> Result<(), String> {
        let rates = [
            ("error_5xx_rate", config.error_5xx_rate),
            ("rate_limited_rate", config.rate_limited_rate),
            ("slow_rate", config.slow_rate),
            ("timeout_rate", config.timeout_rate),
            ("truncated_rate", config.truncated_rate),
            ("malformed_rate", config.malformed_rate),
            ("lost_reply_rate", config.lost_reply_rate),
        ];
        for (name, r) in rates {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("{name} must be between 0 and 1, got {r}"));
            }
        }
        let sum: f64 = rates.iter().map(|(_, r)| r).sum();
        if sum > 1.0 + 1e-9 {
            return Err(format!("fault rates add up to {sum}, more than 1"));
        }
        for name in &config.not_offered {
            if Resource::from_path(name).is_none() {
                return Err(format!("not_offered: unknown resource '{name}'"));
            }
        }
        if config.page_cap == Some(0) {
            return Err("page_cap must be at least 1".into());
        }
        for name in &config.forbidden_resources {
            if Resource::from_path(name).is_none() {
                return Err(format!("forbidden_resources: unknown resource '{name}'"));
            }
        }
        for s in &config.script {
            if let Some(st) = s.status
                && !(500..=599).contains(&st)
            {
                return Err(format!("script status must be 500..=599, got {st}"));
            }
        }
        self.rng = SplitMix::new(hash3(org_seed, FAULT_STREAM, config.seed.unwrap_or(0)));
        self.config = config;
        self.config.script.retain(|s| s.count > 0);
        Ok(())
    }

    /// The fault for a call to `target` (path and query), if any. Scripts
    /// first; then, unless `scripts_only`, one roll of the dice for the rates.
    pub(crate) fn decide(&mut self, target: &str, scripts_only: bool) -> Option<Decision> {
        let c = &mut self.config;
        let pos = c.script.iter().position(|s| match &s.path_contains {
            Some(p) => target.contains(p.as_str()),
            None => !scripts_only,
        });
        if let Some(pos) = pos {
            let s = &mut c.script[pos];
            s.count = s.count.saturating_sub(1);
            let d = match s.fault {
                FaultKind::Error5xx => Decision::Error5xx(s.status.unwrap_or(503)),
                FaultKind::RateLimited => {
                    Decision::RateLimited(s.retry_after_secs.or(c.retry_after_secs).unwrap_or(1))
                }
                FaultKind::Slow => Decision::Slow(s.slow_ms.or(c.slow_ms).unwrap_or(2000)),
                FaultKind::Timeout => Decision::Timeout,
                FaultKind::Truncated => Decision::Truncated,
                FaultKind::Malformed => Decision::Malformed,
                FaultKind::Unauthorized => Decision::Unauthorized,
                FaultKind::LostReply => Decision::LostReply(s.status),
            };
            if s.count == 0 {
                c.script.remove(pos);
            }
            return Some(d);
        }
        if scripts_only {
            return None;
        }
        let rates = [
            c.error_5xx_rate,
            c.rate_limited_rate,
            c.slow_rate,
            c.timeout_rate,
            c.truncated_rate,
            c.malformed_rate,
            c.lost_reply_rate,
        ];
        if rates.iter().all(|r| *r <= 0.0) {
            return None;
        }
        let u = self.rng.unit();
        let mut acc = 0.0;
        for (k, r) in rates.iter().enumerate() {
            acc += r;
            if u < acc {
                return Some(match k {
                    0 => Decision::Error5xx(*self.rng.pick(&[500, 502, 503, 504]).unwrap_or(&500)),
                    1 => Decision::RateLimited(c.retry_after_secs.unwrap_or(1)),
                    2 => Decision::Slow(c.slow_ms.unwrap_or(2000)),
                    3 => Decision::Timeout,
                    4 => Decision::Truncated,
                    5 => Decision::Malformed,
                    _ => Decision::LostReply(Some(
                        *self.rng.pick(&[500, 502, 503, 504]).unwrap_or(&504),
                    )),
                });
            }
        }
        None
    }
}

/// A token bucket: `rps` tokens per second, holding at most `rps`.
#[derive(Debug)]
pub(crate) struct Bucket {
    pub(crate) rps: u32,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(rps: u32) -> Self {
        Self {
            rps,
            tokens: f64::from(rps),
            last: Instant::now(),
        }
    }

    /// Takes a token, or says how many whole seconds (at least 1) to wait.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), u64> {
        let rate = f64::from(self.rps.max(1));
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - self.tokens) / rate).ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ScriptedFault;

    fn script(fault: FaultKind, count: u32, path: Option<&str>) -> ScriptedFault {
        ScriptedFault {
            fault,
            count,
            path_contains: path.map(String::from),
            retry_after_secs: None,
            slow_ms: None,
            status: None,
        }
    }

    #[test]
    fn scripts_run_in_order_for_matching_paths_then_stop() {
        let mut f = FaultState::new(1);
        let cfg = FaultConfig {
            script: vec![
                script(FaultKind::Truncated, 2, Some("/v1/patients")),
                script(FaultKind::Error5xx, 1, None),
            ],
            ..FaultConfig::default()
        };
        assert!(f.set(1, cfg).is_ok());
        assert_eq!(
            f.decide("/x/v1/appointments", false),
            Some(Decision::Error5xx(503))
        );
        assert_eq!(f.decide("/x/v1/appointments", false), None);
        assert_eq!(f.decide("/oauth/client_credential/accesstoken", true), None);
        assert_eq!(
            f.decide("/x/v1/patients?page=2", false),
            Some(Decision::Truncated)
        );
        assert_eq!(f.decide("/x/v1/patients", false), Some(Decision::Truncated));
        assert_eq!(f.decide("/x/v1/patients", false), None);
        assert!(f.config.script.is_empty());
    }

    #[test]
    fn rates_are_deterministic_and_roughly_right() {
        let cfg = FaultConfig {
            error_5xx_rate: 0.2,
            malformed_rate: 0.1,
            seed: Some(9),
            ..FaultConfig::default()
        };
        let roll = || {
            let mut f = FaultState::new(5);
            let _ = f.set(5, cfg.clone());
            (0..2000).map(|_| f.decide("/p", false)).collect::<Vec<_>>()
        };
        let a = roll();
        assert_eq!(a, roll());
        let errors = a
            .iter()
            .filter(|d| matches!(d, Some(Decision::Error5xx(_))))
            .count();
        let malformed = a
            .iter()
            .filter(|d| matches!(d, Some(Decision::Malformed)))
            .count();
        assert!((300..500).contains(&errors), "{errors}");
        assert!((130..270).contains(&malformed), "{malformed}");
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut f = FaultState::new(1);
        assert!(
            f.set(
                1,
                FaultConfig {
                    slow_rate: 1.5,
                    ..FaultConfig::default()
                }
            )
            .is_err()
        );
        assert!(
            f.set(
                1,
                FaultConfig {
                    slow_rate: 0.6,
                    timeout_rate: 0.6,
                    ..FaultConfig::default()
                }
            )
            .is_err()
        );
        assert!(
            f.set(
                1,
                FaultConfig {
                    not_offered: vec!["nope".into()],
                    ..FaultConfig::default()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn bucket_refuses_past_burst_and_refills() {
        let t0 = Instant::now();
        let mut b = Bucket::new(2);
        b.last = t0;
        assert!(b.take(t0).is_ok() && b.take(t0).is_ok());
        assert_eq!(b.take(t0), Err(1));
        assert!(b.take(t0 + std::time::Duration::from_millis(600)).is_ok());
    }
}
