//! WebSocket connection caps (global and per client IP), released on every path by RAII.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitError {
    /// The global cap is reached.
    AtCapacity,
    /// This IP's cap is reached.
    PerIp,
}

#[derive(Debug, Default)]
struct Inner {
    global: AtomicUsize,
    // Touched once per connection open/close, never per frame.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_global: Option<usize>,
    max_per_ip: Option<usize>,
}

/// Counts open connections against the configured caps.
#[derive(Debug, Clone, Default)]
pub struct ConnectionLimiter(Arc<Inner>);

/// One open connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionSlot {
    limiter: ConnectionLimiter,
    ip: IpAddr,
}

impl ConnectionLimiter {
    /// A limiter with optional global and per-IP caps.
    pub fn new(max_global: Option<usize>, max_per_ip: Option<usize>) -> Self {
        Self(Arc::new(Inner {
            max_global,
            max_per_ip,
            ..Inner::default()
        }))
    }

    /// Takes a place for a connection from `ip`.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnectionSlot, LimitError> {
        let prev = self.0.global.fetch_add(1, Ordering::AcqRel);
        if self.0.max_global.is_some_and(|max| prev >= max) {
            self.0.global.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitError::AtCapacity);
        }
        let mut map = self.0.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if self.0.max_per_ip.is_some_and(|max| *n >= max) {
            drop(map);
            self.0.global.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitError::PerIp);
        }
        *n += 1;
        Ok(ConnectionSlot {
            limiter: self.clone(),
            ip,
        })
    }

    /// Open connections now.
    pub fn active(&self) -> usize {
        self.0.global.load(Ordering::Acquire)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let inner = &self.limiter.0;
        let mut map = inner.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        drop(map);
        inner.global.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_release() {
        let l = ConnectionLimiter::new(Some(3), Some(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = l.try_acquire(a).unwrap();
        let _s2 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire(a).unwrap_err(), LimitError::PerIp);
        let _s3 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(b).unwrap_err(), LimitError::AtCapacity);
        assert_eq!(l.active(), 3);
        drop(s1);
        assert_eq!(l.active(), 2);
        assert!(l.try_acquire(a).is_ok());
    }
}
