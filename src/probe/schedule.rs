//! A probe's attempts on its cadence, until one passes, one settles the probe, or the deadline.
//!
//! While the target has given no sign (nothing came back: no data, no refusal, no close), a new
//! attempt starts every `interval` whether or not older ones have ended. A connection that went
//! silent says nothing about the next one: EC2 drops the SYNs of an instance whose network is not up
//! and the kernel then retries on its own slow clock (1 s, 3 s, 7 s …), QEMU's user network holds a
//! connection it accepted for a guest that was not listening yet. A fresh attempt sees a service as
//! soon as it is there. Overlap is bounded ([`IN_FLIGHT`]); one attempt at a time runs with the
//! probe's own timeout (a slow but correct service is still heard), the others with a shorter limit
//! that keeps the bound without skipping a beat.
//!
//! Behind QEMU's user network ([`ConnectMeaning::MaybeProxy`]) silent attempts start no more often
//! than [`PROXY_UNHEARD_PACE`]: QEMU accepts each connection for the guest and, until the guest
//! answers, never notices the client closing it, so every attempt leaves a connection inside QEMU
//! that keeps sending its SYN to the guest for over a minute. At 20 attempts a second hundreds of
//! them reach the guest as its network comes up; captured with QEMU's `filter-dump` on the Debian
//! image, 80 arrived ahead of its first DHCP offer, which it let pass, asking again 4.4 s later.
//!
//! An SSH attempt that has logged in runs its command: no other attempt starts beside it.
//!
//! The first attempt that hears an answer ends that: the others are cancelled (not recorded), and
//! attempts go one at a time again, `interval` apart, each with the probe's own timeout (a command
//! that takes a minute is never started twice at once). An attempt that hears nothing again goes
//! back to overlapping.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::{sleep_until, Instant};

use super::{attempt, rdp, tcp, Attempt, Check, ConnectMeaning, Probe, ProbeEnv, Session, Target};

/// At most this many attempts of one probe are in flight at once.
pub const IN_FLIGHT: usize = 4;

/// The least time between silent attempts through a proxy that holds what it accepts (QEMU's user
/// network): the cadence of a `curl --max-time 0.5` loop, the yardstick of the qemu_ready bench.
pub const PROXY_UNHEARD_PACE: Duration = Duration::from_millis(500);

/// What the caller makes of a finished attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The probe is done (passed, or settled for good): whatever is in flight is cancelled.
    Stop,
}

/// Where a probe's target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No sign since the start or since an attempt went silent: attempts overlap.
    Unheard,
    /// It answers: one attempt at a time.
    Answering,
}

impl Probe {
    /// The probe's own limit for one attempt, as its kind defines it.
    fn own_timeout(&self) -> Duration {
        match &self.check {
            Check::Http(http) => http.timeout,
            Check::Tcp(_) => tcp::CONNECT_TIMEOUT,
            Check::Ssh(ssh) => ssh.timeout,
            Check::Agent(agent) => agent.timeout,
            Check::Rdp { .. } | Check::WindowsPassword => rdp::TIMEOUT,
        }
    }

    /// The time between attempts while the target has given no sign: the interval, but never
    /// quicker than [`PROXY_UNHEARD_PACE`] where a connection may be held by a proxy.
    pub fn unheard_pace(&self, meaning: ConnectMeaning) -> Duration {
        match meaning {
            ConnectMeaning::Listening => self.interval,
            ConnectMeaning::MaybeProxy => self.interval.max(PROXY_UNHEARD_PACE),
        }
    }

    /// The limit of an attempt that overlaps the long one when attempts start every `pace`, on
    /// connecting and again on its first answer: a silent one ends half a pace before
    /// [`IN_FLIGHT`] - 1 more attempts have started, so that the bound holds with room to spare (a
    /// connection takes a moment to close); one that connected and waits may take longer, and then
    /// a beat is skipped (the bound is kept by count). `None` when that is no shorter than the
    /// probe's own timeout.
    pub fn short_limit(&self, pace: Duration) -> Option<Duration> {
        let limit = pace.saturating_mul(IN_FLIGHT as u32 - 2) + pace / 2;
        (limit < self.own_timeout()).then_some(limit)
    }

    /// Whether this kind's attempts may overlap: the Windows password is asked of the platform's
    /// API, which answers or throttles, and is never silent; the agent serves one command at a time.
    fn overlaps(&self) -> bool {
        !matches!(self.check, Check::WindowsPassword | Check::Agent(_))
    }
}

/// Runs `probe`'s attempts against `target` from now until `deadline` (none starts after it),
/// handing each finished one to `judge`; `t0` is the clock of the attempts' `at_s`. Ends when
/// `judge` says stop, or when the deadline has passed and nothing is in flight any more. Dropping
/// the future cancels what is in flight.
pub async fn run(
    probe: &Probe,
    target: &Target,
    env: &Arc<ProbeEnv>,
    t0: Instant,
    deadline: Instant,
    mut judge: impl FnMut(Attempt) -> Flow,
) {
    let session = Session::default();
    let mut in_flight = FuturesUnordered::new();
    let mut phase = if probe.overlaps() { Phase::Unheard } else { Phase::Answering };
    let mut long_in_flight = false;
    let mut next_start = Instant::now();
    let unheard_pace = probe.unheard_pace(env.meaning);
    loop {
        let room = match phase {
            // Once an SSH attempt has logged in, its command runs: none starts beside it.
            Phase::Unheard => in_flight.len() < IN_FLIGHT && !session.logged_in(),
            Phase::Answering => in_flight.is_empty(),
        };
        tokio::select! {
            _ = sleep_until(next_start), if room && next_start < deadline => {
                let long = phase == Phase::Answering || !long_in_flight;
                long_in_flight |= long;
                let limit = if long { None } else { probe.short_limit(unheard_pace) };
                let (started, at_s) = (Instant::now(), round_ms(t0.elapsed()));
                let session = &session;
                // Each finished attempt comes back with whether it was the long one.
                in_flight.push(async move { (attempt(probe, session, target, env, at_s, limit).await, long) });
                next_start = started + if phase == Phase::Unheard { unheard_pace } else { probe.interval };
            }
            Some((attempt, long)) = in_flight.next(), if !in_flight.is_empty() => {
                long_in_flight &= !long;
                let silent = attempt.silent;
                if judge(attempt) == Flow::Stop {
                    return;
                }
                match (phase, silent) {
                    (Phase::Unheard, false) if probe.overlaps() => {
                        // Heard: the others were started while it was silent and say nothing new.
                        in_flight = FuturesUnordered::new();
                        (phase, long_in_flight) = (Phase::Answering, false);
                    }
                    (Phase::Answering, true) if probe.overlaps() => {
                        session.forget_login();
                        phase = Phase::Unheard;
                    }
                    _ => {}
                }
            }
            else => return,
        }
    }
}

/// Seconds, to the millisecond.
fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Every finished attempt of a run, in the order they ended (for tests).
#[cfg(test)]
pub(crate) async fn collect(
    probe: &Probe,
    endpoint: &super::Endpoint,
    env: &Arc<ProbeEnv>,
    within: Duration,
) -> Vec<Attempt> {
    let mut seen = Vec::new();
    let t0 = Instant::now();
    run(probe, &Target::Port(endpoint.clone()), env, t0, t0 + within, |a| {
        let done = a.passed || a.settled;
        seen.push(a);
        if done {
            Flow::Stop
        } else {
            Flow::Continue
        }
    })
    .await;
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::attempt::tests::loopback_env;
    use crate::probe::compile::tests::probe;
    use crate::probe::Endpoint;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A service behind something that accepts for it, as QEMU's user network does for a guest not
    /// yet up: every connection is accepted, those made before `answers_from` are held and never
    /// answered, later ones are answered at once. Counts the connections open at once.
    struct LateService {
        port: u16,
        answers_from: std::time::Instant,
        most_open: Arc<AtomicUsize>,
        /// Connections accepted while it was silent.
        held: Arc<AtomicUsize>,
    }

    async fn late_service(silent_for: Duration) -> LateService {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers_from = std::time::Instant::now() + silent_for;
        let (open, most_open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let held = Arc::new(AtomicUsize::new(0));
        let (most, held_count) = (most_open.clone(), held.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now_open, Ordering::SeqCst);
                if std::time::Instant::now() < answers_from {
                    held_count.fetch_add(1, Ordering::SeqCst);
                }
                let open = open.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    if std::time::Instant::now() >= answers_from {
                        // An HTTP client speaks first; a TCP probe waits to be spoken to.
                        let _ = tokio::time::timeout(Duration::from_millis(50), socket.read(&mut buf)).await;
                        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                    }
                    // Held until the client gives up on it (or has read the answer and closes).
                    while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        LateService { port, answers_from, most_open, held }
    }

    /// A target silent for 3.5 s, then answering: the probe passes within about one interval of
    /// that moment, not when an attempt that went silent gives up (before attempts overlapped, one
    /// at a time with limits doubling from 200 ms, the attempt started at 3 s was held until 6.2 s).
    /// Never more than [`IN_FLIGHT`] at once.
    async fn passes_soon_after_the_target_answers(spec: &str) {
        let service = late_service(Duration::from_millis(3500)).await;
        let p = probe(&spec.replace("PORT", &service.port.to_string()));
        let endpoint = Endpoint { host: "127.0.0.1".into(), port: service.port };
        let started = std::time::Instant::now();
        let attempts = collect(&p, &endpoint, &loopback_env(), Duration::from_secs(30)).await;
        let passed = std::time::Instant::now();
        let last = attempts.last().unwrap();
        assert!(last.passed, "{attempts:#?}");
        let late = passed.saturating_duration_since(service.answers_from);
        println!("{}: passed {late:?} after the target answered, {} attempts", p.kind(), attempts.len());
        // One interval, and generous room for a loaded machine: what this tells apart is seconds.
        assert!(late < p.interval + Duration::from_secs(1), "{late:?} late: {attempts:#?}");
        let most = service.most_open.load(Ordering::SeqCst);
        assert!(most <= IN_FLIGHT, "{most} connections open at once");
        // Paced by the interval: no more attempts than the cadence allows.
        let cadence = (passed - started).as_secs_f64() / p.interval.as_secs_f64();
        assert!(attempts.len() as f64 <= cadence + 1.0, "{} attempts in {cadence:.1} intervals", attempts.len());
    }

    #[tokio::test]
    async fn an_http_probe_passes_soon_after_a_silent_target_answers() {
        passes_soon_after_the_target_answers("name: h\nhttp: {port: PORT, timeout: 5s}\ninterval: 200ms").await;
    }

    #[tokio::test]
    async fn a_tcp_probe_passes_soon_after_a_silent_target_answers() {
        passes_soon_after_the_target_answers("name: t\ntcp: {port: PORT}\ninterval: 200ms").await;
    }

    /// Once the target answers (here: `503` after 300 ms, longer than the 100 ms interval), attempts
    /// go one at a time: each starts after the one before it ended.
    #[tokio::test]
    async fn an_answering_target_gets_one_attempt_at_a_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = socket.write_all(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n").await;
                });
            }
        });
        let p = probe(&format!("name: h\nhttp: {{port: {port}, timeout: 5s}}\ninterval: 100ms"));
        let endpoint = Endpoint { host: "127.0.0.1".into(), port };
        let attempts = collect(&p, &endpoint, &loopback_env(), Duration::from_secs(2)).await;
        let heard = attempts.iter().position(|a| !a.silent).expect("an answer");
        let answered = &attempts[heard..];
        assert!(answered.len() >= 4, "{answered:#?}");
        assert!(answered.iter().all(|a| a.message.starts_with("status 503")), "{answered:#?}");
        for pair in answered.windows(2) {
            let ended = pair[0].at_s + pair[0].latency_ms as f64 / 1000.0;
            assert!(pair[1].at_s >= ended - 0.002, "overlapping after an answer: {pair:#?}");
        }
    }

    /// Behind a proxy that holds what it accepts (QEMU's user network), a 50 ms interval makes no
    /// more than one silent connection every [`PROXY_UNHEARD_PACE`]: each one would live on inside
    /// QEMU, sending SYNs to the booting guest. Once the target answers, the interval is the pace.
    #[tokio::test]
    async fn a_proxy_gets_silent_attempts_at_its_own_pace() {
        let silent_for = Duration::from_secs(2);
        let service = late_service(silent_for).await;
        let p = probe(&format!("name: h\nhttp: {{port: {}, timeout: 5s}}\ninterval: 50ms", service.port));
        let endpoint = Endpoint { host: "127.0.0.1".into(), port: service.port };
        let attempts = collect(&p, &endpoint, &loopback_env(), Duration::from_secs(10)).await;
        assert!(attempts.last().is_some_and(|a| a.passed), "{attempts:#?}");
        let held = service.held.load(Ordering::SeqCst);
        let allowed = silent_for.as_secs_f64() / PROXY_UNHEARD_PACE.as_secs_f64() + 1.0;
        assert!(held as f64 <= allowed, "{held} connections held in {silent_for:?} (at most {allowed})");
        assert!(held >= 2, "attempts went on while it was silent: {held}");
    }

    #[test]
    fn the_pace_while_unheard_depends_on_what_a_connection_means() {
        let p = probe("name: h\nhttp: {port: 80, timeout: 5s}\ninterval: 50ms");
        assert_eq!(p.unheard_pace(ConnectMeaning::Listening), Duration::from_millis(50));
        assert_eq!(p.unheard_pace(ConnectMeaning::MaybeProxy), PROXY_UNHEARD_PACE);
        let p = probe("name: h\nhttp: {port: 80, timeout: 5s}\ninterval: 2s");
        assert_eq!(p.unheard_pace(ConnectMeaning::MaybeProxy), Duration::from_secs(2));
    }

    #[test]
    fn overlapping_attempts_end_before_the_bound_is_reached() {
        let p = probe("name: h\nhttp: {port: 80, timeout: 5s}\ninterval: 200ms");
        assert_eq!(p.short_limit(p.interval), Some(Duration::from_millis(500)));
        let p = probe("name: h\nhttp: {port: 80, timeout: 5s}\ninterval: 2s");
        assert_eq!(p.short_limit(p.interval), None, "two and a half intervals are longer than the probe's own timeout");
    }
}
