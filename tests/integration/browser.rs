//! A real browser for the live view's tests: headless Chromium (Debian
//! `chromium`) driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: commands on its fd 3, answers and events on
//! its fd 4, each a JSON message ended by a NUL byte). No websocket and no
//! WebDriver server: the test speaks the protocol itself.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{have, wait_for};

/// The Chromium binary, if installed.
pub fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| have(c))
}

/// Flags for a browser that leaves no trace and needs nothing: it runs as
/// root here (no sandbox) on a machine without a display or GPU.
fn flags(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--mute-audio",
        "--remote-debugging-pipe",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

pub struct Browser {
    child: Child,
    commands: std::io::PipeWriter,
    messages: Receiver<Value>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// One page (a target) of the browser, attached through a session.
pub struct Page {
    session: String,
}

impl Browser {
    /// Chromium, run by the command `command` makes from Chromium's flags:
    /// the browser itself, or a wrapper that runs it with those flags and
    /// leaves it fds 3 and 4.
    pub fn start(command: impl FnOnce(Vec<String>) -> Command) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut command = command(flags(profile.path()));
        // Commands: we write, the browser reads on its fd 3.
        let (browser_in, commands) = std::io::pipe().unwrap();
        // Answers and events: the browser writes on its fd 4, we read.
        let (from_browser, browser_out) = std::io::pipe().unwrap();
        let (browser_in, browser_out): (OwnedFd, OwnedFd) = (browser_in.into(), browser_out.into());
        let (r, w) = (browser_in.as_raw_fd(), browser_out.as_raw_fd());
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Out of the way first: either may already be fd 3 or 4.
                let high_r = libc::fcntl(r, libc::F_DUPFD_CLOEXEC, 10);
                let high_w = libc::fcntl(w, libc::F_DUPFD_CLOEXEC, 10);
                if high_r < 0
                    || high_w < 0
                    || libc::dup2(high_r, 3) < 0
                    || libc::dup2(high_w, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        drop((browser_in, browser_out));
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_browser);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).unwrap_or(0) > 0 {
                message.pop_if(|b| *b == 0);
                if let Ok(v) = serde_json::from_slice::<Value>(&message)
                    && tx.send(v).is_err()
                {
                    return;
                }
                message.clear();
            }
        });
        Browser {
            child,
            commands,
            messages,
            next_id: 0,
            _profile: profile,
        }
    }

    /// Sends a command (to a page's session, or to the browser) and waits
    /// for its answer; events that arrive meanwhile are dropped.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_call(session, method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// [`Browser::call`], with the protocol's error as an `Err`.
    fn try_call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(v) if v["id"] == id => {
                    return match v.get("error") {
                        Some(e) => Err(e.clone()),
                        None => Ok(v["result"].clone()),
                    };
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{method}: no answer from chromium in 30 s")
                }
                Err(RecvTimeoutError::Disconnected) => panic!("{method}: chromium exited"),
            }
        }
    }

    /// Opens a page on `url`, with scripts on or off, and waits until it has
    /// loaded (the deferred script has then run once).
    pub fn open(&mut self, url: &str, scripts: bool) -> Page {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        let page = Page {
            session: attached["sessionId"].as_str().unwrap().to_owned(),
        };
        if !scripts {
            self.call(
                Some(&page.session),
                "Emulation.setScriptExecutionDisabled",
                json!({"value": true}),
            );
        }
        self.call(Some(&page.session), "Page.navigate", json!({"url": url}));
        // The load event is not waited on as an event (it may come before
        // this reads); the document is polled instead, through the DOM
        // domain, which works with scripts off too.
        wait_for(Duration::from_secs(30), || {
            self.try_html(&page)
                .filter(|html| html.contains("</footer>"))
        })
        .expect("the page loaded");
        page
    }

    /// The document as the browser holds it now, serialized.
    pub fn html(&mut self, page: &Page) -> String {
        wait_for(Duration::from_secs(10), || self.try_html(page)).expect("the document")
    }

    /// `None` while the document changes under the two calls (a navigation).
    fn try_html(&mut self, page: &Page) -> Option<String> {
        let session = Some(page.session.as_str());
        let doc = self
            .try_call(session, "DOM.getDocument", json!({"depth": 0}))
            .ok()?;
        let html = self
            .try_call(
                session,
                "DOM.getOuterHTML",
                json!({"nodeId": doc["root"]["nodeId"]}),
            )
            .ok()?;
        html["outerHTML"].as_str().map(str::to_owned)
    }

    /// Whether the first element `selector` matches has a box (is laid
    /// out, not `display: none`), asked through the DOM domain, so that it
    /// works with scripts off too.
    pub fn shown(&mut self, page: &Page, selector: &str) -> bool {
        let session = Some(page.session.as_str());
        let doc = self.call(session, "DOM.getDocument", json!({"depth": 0}));
        let node = self.call(
            session,
            "DOM.querySelector",
            json!({"nodeId": doc["root"]["nodeId"], "selector": selector}),
        );
        assert_ne!(node["nodeId"], 0, "{selector}: no such element");
        self.try_call(
            session,
            "DOM.getBoxModel",
            json!({"nodeId": node["nodeId"]}),
        )
        .is_ok()
    }

    /// Shows the page as a phone would: `width` x `height` CSS pixels, mobile.
    pub fn phone(&mut self, page: &Page, width: u32, height: u32) {
        self.call(
            Some(&page.session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 3, "mobile": true}),
        );
    }

    /// Shows the page as a desktop browser would: `width` x `height` CSS pixels.
    pub fn desktop(&mut self, page: &Page, width: u32, height: u32) {
        self.call(
            Some(&page.session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// Saves what the page's viewport shows as a PNG at `path`.
    pub fn screenshot(&mut self, page: &Page, path: &Path) {
        let shot = self.call(
            Some(&page.session),
            "Page.captureScreenshot",
            json!({"format": "png"}),
        );
        let png = base64(shot["data"].as_str().expect("screenshot data"));
        std::fs::write(path, png).unwrap();
    }

    /// Evaluates `expression` in the page and returns its value as JSON.
    pub fn eval(&mut self, page: &Page, expression: &str) -> Value {
        let r = self.call(
            Some(&page.session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        assert!(
            r.get("exceptionDetails").is_none(),
            "{expression}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decodes standard base64 (the protocol's binary data); stops at padding.
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (Vec::with_capacity(text.len() * 3 / 4), 0u32, 0);
    for v in text.bytes().map_while(value) {
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
