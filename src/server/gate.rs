//! The admission gate: what a request must pass before the routes see it.
//! Basic auth first (from the web config), for every path, known or not, so a
//! client without a password learns nothing; then, for the routes that read
//! net/dev (the route table says which), a permit under `--web.max-requests`.
//! It runs in the connection's service, ahead of the warp filter, as it
//! works on the connection: its peer address, and the permit, which
//! `conn::ConnState` holds and gives back when the response is written or
//! stalls.

use std::sync::Arc;

use hyper::body::Incoming;
use warp::http::StatusCode;

use super::access::{Access, AccessState, Verdict};
use super::conn::ConnState;
use super::permits::{Refused, ScrapePermits};
use super::reply;
use super::routes::Table;
use crate::expose::telemetry::LimitMetric;

pub struct Gate {
    pub access: Arc<Access>,
    pub table: Table,
    pub scrapes: Option<Arc<ScrapePermits>>,
    pub refused: Arc<LimitMetric>,
}

impl Gate {
    /// `Ok` to route the request; otherwise the answer.
    pub async fn admit(
        &self,
        access: &AccessState,
        request: &http::Request<Incoming>,
        state: &ConnState,
    ) -> Result<(), warp::reply::Response> {
        if access.needs_auth() {
            let authorization = request.headers().get(http::header::AUTHORIZATION);
            match self
                .access
                .authorize(access, authorization, state.peer.ip())
                .await
            {
                Verdict::Granted => {}
                Verdict::Refused => return Err(reply::unauthorized()),
                Verdict::Busy => {
                    return Err(reply::plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "503 busy checking passwords; try again\n",
                    ));
                }
            }
        }
        let Some(scrapes) = &self.scrapes else {
            return Ok(());
        };
        let scrapes_netdev = self
            .table
            .route(request.uri().path())
            .is_some_and(|route| route.scrapes());
        if !scrapes_netdev {
            return Ok(());
        }
        match scrapes.try_acquire(state.peer.ip()) {
            Ok(permit) => {
                state.hold(permit);
                Ok(())
            }
            Err(why) => {
                let max = scrapes.max();
                let reason = match why {
                    Refused::Full => format!("{max} are being served (--web.max-requests)"),
                    Refused::Share { held, .. } => format!(
                        "this address has {held} of the {max} (--web.max-requests) and shares them with others"
                    ),
                };
                self.refused.hit(&format!("{}: {reason}", state.peer));
                Err(reply::plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("503 too many scrapes at once: {reason}; try again\n"),
                ))
            }
        }
    }
}
