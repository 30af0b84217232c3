//! Calls to the manager service, compatible with nginx-rtmp's notify module (`on_publish`, `on_play`,
//! `on_publish_done`, `on_play_done`, `on_update`): the same HTTP POST with the same
//! `application/x-www-form-urlencoded` fields, read the same way, so a manager written for nginx-rtmp
//! works unchanged.
//!
//! Body fields, in nginx-rtmp's order: `app`, `flashver`, `swfurl`, `tcurl`, `pageurl`, `addr`,
//! `clientid`, then `call` and the event's own fields (`name`, `type` for publish; `name`, `start`,
//! `duration`, `reset` for play; `time`, `timestamp`, `name` for update), then every query argument the
//! client put on the stream name (`rtmp://host/live/key?token=abc` adds `token=abc`). The e2e suite
//! checks this against Debian's nginx-rtmp itself, which is how `call=update_publish`/`update_play`
//! (not the documented `update`) and play's raw `start` value were found.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::LOCATION;
use reqwest::redirect::Policy;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Hook URLs; each is optional.
#[derive(Debug, Clone, Default)]
pub struct HookUrls {
    pub on_publish: Option<String>,
    pub on_publish_done: Option<String>,
    pub on_play: Option<String>,
    pub on_play_done: Option<String>,
    pub on_update: Option<String>,
    pub on_record_done: Option<String>,
}

/// What the client said about itself in `connect`, plus where it connects from.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub app: String,
    pub flashver: String,
    pub swfurl: String,
    pub tcurl: String,
    pub pageurl: String,
    pub addr: Option<IpAddr>,
    pub clientid: u64,
}

/// Publisher or player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publish,
    Play,
}

/// The arguments of the client's `play` command, as nginx-rtmp reports them: milliseconds, cast to an
/// unsigned 32-bit number (so ffmpeg's "live or recorded", -2 s, is sent as 4294965296).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayRequest {
    pub start_ms: u32,
    pub duration_ms: u32,
    pub reset: bool,
}

/// The manager's answer to `on_publish` / `on_play`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 2xx, or no hook configured.
    Allow,
    /// 3xx with `Location: newname`: allowed under the new name.
    Rename(String),
    /// Anything else; the reason is for the log and the client's error status.
    Deny(Denial),
}

/// Why the manager's answer denies a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// 3xx whose `Location` is no stream name (nginx-rtmp would relay to an `rtmp://` one).
    #[error("manager redirected to `{0}`, which is not a stream name")]
    BadRedirect(String),
    /// 3xx without `Location`.
    #[error("manager answered 3xx without Location")]
    RedirectWithoutLocation,
    /// Any other non-2xx status.
    #[error("manager answered {0}")]
    Status(u16),
    /// No answer within `--hook-timeout`.
    #[error("manager did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The request failed (connection refused, reset, ...).
    #[error("manager unreachable: {0}")]
    Unreachable(String),
}

/// The hook client.
#[derive(Clone)]
pub struct Hooks {
    client: reqwest::Client,
    urls: HookUrls,
    timeout: Duration,
    /// Done-hooks run in the background; shutdown waits for them.
    pending: TaskTracker,
}

/// Attempts of a done-hook before giving up: they are retried because a manager that misses one keeps a
/// stream "live" in its books for ever.
const DONE_ATTEMPTS: u32 = 4;

impl Hooks {
    /// A client with the given URLs and per-request timeout.
    pub fn new(urls: HookUrls, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            // A 3xx is an answer to read (a rename), never a redirect to follow.
            .redirect(Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            client,
            urls,
            timeout,
            pending: TaskTracker::new(),
        }
    }

    /// Whether `on_update` is configured.
    pub fn has_update(&self) -> bool {
        self.urls.on_update.is_some()
    }

    /// Asks whether `name` may be published. The second value is the manager's `X-Record: on|off`
    /// answer header, which turns recording on or off for this broadcast whatever `--record` says.
    pub async fn on_publish(
        &self,
        client: &ClientInfo,
        name: &str,
        publish_type: &str,
        args: &[(String, String)],
    ) -> (Decision, Option<bool>) {
        let Some(url) = &self.urls.on_publish else {
            return (Decision::Allow, None);
        };
        let mut form = session_fields(client);
        form.push(("call", "publish".into()));
        form.push(("name", name.into()));
        form.push(("type", publish_type.into()));
        self.decide(url, form, args).await
    }

    /// Asks whether `name` may be played; `request` is what the client's `play` asked for.
    pub async fn on_play(
        &self,
        client: &ClientInfo,
        name: &str,
        request: PlayRequest,
        args: &[(String, String)],
    ) -> Decision {
        let Some(url) = &self.urls.on_play else {
            return Decision::Allow;
        };
        let mut form = session_fields(client);
        form.push(("call", "play".into()));
        form.push(("name", name.into()));
        form.push(("start", request.start_ms.to_string()));
        form.push(("duration", request.duration_ms.to_string()));
        form.push(("reset", u8::from(request.reset).to_string()));
        self.decide(url, form, args).await.0
    }

    /// Periodic `on_update`; returns false when the manager wants the client dropped (non-2xx). A
    /// manager that cannot be reached does not end a broadcast: only an explicit answer does.
    pub async fn on_update(
        &self,
        role: Role,
        client: &ClientInfo,
        name: &str,
        args: &[(String, String)],
        seconds: u64,
        timestamp_ms: u32,
    ) -> bool {
        let Some(url) = &self.urls.on_update else {
            return true;
        };
        let mut form = session_fields(client);
        form.push((
            "call",
            match role {
                Role::Publish => "update_publish",
                Role::Play => "update_play",
            }
            .into(),
        ));
        form.push(("time", seconds.to_string()));
        form.push(("timestamp", timestamp_ms.to_string()));
        form.push(("name", name.into()));
        match self.post(url, form, args).await {
            Ok(resp) if resp.status().is_success() => true,
            Ok(resp) => {
                info!(
                    ?role,
                    status = resp.status().as_u16(),
                    "on_update answered non-2xx: dropping the client"
                );
                false
            }
            Err(e) => {
                warn!(?role, error = %e, "on_update failed; keeping the client");
                true
            }
        }
    }

    /// Fires `on_publish_done` / `on_play_done` in the background, retried with backoff; never blocks
    /// the caller. Exactly-once per session is the caller's duty (it calls this from one place).
    pub fn done(&self, role: Role, client: &ClientInfo, name: &str, args: &[(String, String)]) {
        let (url, call) = match role {
            Role::Publish => (&self.urls.on_publish_done, "publish_done"),
            Role::Play => (&self.urls.on_play_done, "play_done"),
        };
        let Some(url) = url.clone() else {
            return;
        };
        let mut form = session_fields(client);
        form.push(("call", call.into()));
        form.push(("name", name.into()));
        self.fire(url, call, form, args, name);
    }

    /// Fires nginx-rtmp's `on_record_done` for one finished recording file, like the other done-hooks:
    /// `call=record_done`, `recorder`, `name`, `path` after the session fields, then the arguments.
    pub fn record_done(
        &self,
        client: &ClientInfo,
        name: &str,
        recorder: &str,
        path: &std::path::Path,
        args: &[(String, String)],
    ) {
        let Some(url) = self.urls.on_record_done.clone() else {
            return;
        };
        let mut form = session_fields(client);
        form.push(("call", "record_done".into()));
        form.push(("recorder", recorder.into()));
        form.push(("name", name.into()));
        form.push(("path", path.to_string_lossy().into_owned()));
        self.fire(url, "record_done", form, args, name);
    }

    /// Posts a done-hook in the background, retried with backoff while the manager cannot be reached.
    fn fire(
        &self,
        url: String,
        call: &'static str,
        form: Vec<(&'static str, String)>,
        args: &[(String, String)],
        name: &str,
    ) {
        let args = args.to_vec();
        let this = self.clone();
        let name = name.to_owned();
        self.pending.spawn(async move {
            let mut delay = Duration::from_millis(250);
            for attempt in 1..=DONE_ATTEMPTS {
                match this.post(&url, form.clone(), &args).await {
                    Ok(resp) if resp.status().is_success() => {
                        debug!(%name, call, "done-hook delivered");
                        return;
                    }
                    Ok(resp) => {
                        // The manager heard us; an error status is its business, not a reason to repeat.
                        warn!(%name, call, status = resp.status().as_u16(), "done-hook answered non-2xx");
                        return;
                    }
                    Err(e) if attempt < DONE_ATTEMPTS => {
                        warn!(%name, call, attempt, error = %e, "done-hook failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    Err(e) => warn!(%name, call, error = %e, "done-hook failed; giving up"),
                }
            }
        });
    }

    /// Waits (bounded) for done-hooks still in flight, at shutdown.
    pub async fn drain(&self, timeout: Duration) {
        crate::shutdown::drain(&self.pending, timeout, "done-hooks").await;
    }

    async fn decide(
        &self,
        url: &str,
        form: Vec<(&'static str, String)>,
        args: &[(String, String)],
    ) -> (Decision, Option<bool>) {
        let resp = self.post(url, form, args).await;
        let record = resp
            .as_ref()
            .ok()
            .and_then(|r| record_header(r.headers().get("x-record").and_then(|v| v.to_str().ok())));
        let decision = match resp {
            Ok(resp) if resp.status().is_success() => Decision::Allow,
            Ok(resp) if resp.status().is_redirection() => {
                match resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                    // nginx-rtmp treats an `rtmp://` Location as a relay target; there is no relay here.
                    Some(loc) if !loc.is_empty() && !loc.contains("://") => {
                        Decision::Rename(loc.trim_start_matches('/').to_owned())
                    }
                    Some(loc) => Decision::Deny(Denial::BadRedirect(loc.to_owned())),
                    None => Decision::Deny(Denial::RedirectWithoutLocation),
                }
            }
            Ok(resp) => Decision::Deny(Denial::Status(resp.status().as_u16())),
            Err(e) if e.is_timeout() => Decision::Deny(Denial::Timeout(self.timeout)),
            Err(e) => Decision::Deny(Denial::Unreachable(e.to_string())),
        };
        (decision, record)
    }

    async fn post(
        &self,
        url: &str,
        mut form: Vec<(&'static str, String)>,
        args: &[(String, String)],
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut fields: Vec<(&str, &str)> =
            form.iter_mut().map(|(k, v)| (*k, v.as_str())).collect();
        fields.extend(args.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.client.post(url).form(&fields).send().await
    }
}

fn session_fields(c: &ClientInfo) -> Vec<(&'static str, String)> {
    vec![
        ("app", c.app.clone()),
        ("flashver", c.flashver.clone()),
        ("swfurl", c.swfurl.clone()),
        ("tcurl", c.tcurl.clone()),
        ("pageurl", c.pageurl.clone()),
        ("addr", c.addr.map(|a| a.to_string()).unwrap_or_default()),
        ("clientid", c.clientid.to_string()),
    ]
}

/// Reads the `X-Record` answer header: `on` / `off` (any case); anything else is ignored, with a warning.
pub fn record_header(value: Option<&str>) -> Option<bool> {
    match value?.trim().to_ascii_lowercase().as_str() {
        "on" => Some(true),
        "off" => Some(false),
        other => {
            warn!(
                value = other,
                "ignoring X-Record answer header: expected `on` or `off`"
            );
            None
        }
    }
}

/// Splits `name?a=1&b=2` into the name and its query arguments (percent-decoded).
pub fn split_stream_key(key: &str) -> (&str, Vec<(String, String)>) {
    match key.split_once('?') {
        Some((name, query)) => (
            name,
            serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default(),
        ),
        None => (key, Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_keys_split_into_name_and_arguments() {
        assert_eq!(split_stream_key("cam"), ("cam", vec![]));
        let (name, args) = split_stream_key("cam?token=a%20b&x=1");
        assert_eq!(name, "cam");
        assert_eq!(
            args,
            vec![("token".into(), "a b".into()), ("x".into(), "1".into())]
        );
    }

    #[test]
    fn x_record_turns_recording_on_or_off() {
        assert_eq!(record_header(Some("on")), Some(true));
        assert_eq!(record_header(Some(" OFF ")), Some(false));
        assert_eq!(record_header(Some("yes")), None);
        assert_eq!(record_header(None), None);
    }

    #[tokio::test]
    async fn no_hook_configured_means_allow() {
        let hooks = Hooks::new(HookUrls::default(), Duration::from_millis(100));
        let c = ClientInfo::default();
        assert_eq!(
            hooks.on_publish(&c, "cam", "live", &[]).await,
            (Decision::Allow, None)
        );
        assert_eq!(
            hooks.on_play(&c, "cam", PlayRequest::default(), &[]).await,
            Decision::Allow
        );
        assert!(hooks.on_update(Role::Publish, &c, "cam", &[], 1, 0).await);
    }

    #[tokio::test]
    async fn a_refused_connection_denies() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let hooks = Hooks::new(
            HookUrls {
                on_publish: Some(format!("http://127.0.0.1:{port}/on_publish")),
                ..HookUrls::default()
            },
            Duration::from_millis(500),
        );
        let d = hooks
            .on_publish(&ClientInfo::default(), "cam", "live", &[])
            .await
            .0;
        assert!(matches!(d, Decision::Deny(why) if why.to_string().contains("unreachable")));
    }
}
