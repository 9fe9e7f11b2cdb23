//! The pages people use, rendered on the server: every core action is a
//! plain form (no JavaScript needed); a page with a sync under way
//! refreshes itself every few seconds until it ends.
//!
//! - `/login`: sign in with an admin token (kept in the session cookie).
//! - `/practices`: every practice with status, staleness against its
//!   interval (highlighted when stale) and a progress bar while its
//!   initial sync runs. A practice user goes to its own settings.
//! - `/practices/{id}/settings`: PMS Sync Settings (status, last sync,
//!   interval, Force Sync Now, one switch per write-back type, the note
//!   provider).
//! - `/history`: Sync History, filterable, with a Resync button on each
//!   failure (for the Cloud PMS Admin team).
//! - `/dead-letters`: list and redrive.
//!
//! Every form carries the session's CSRF token and is refused without
//! it; every action passes the Gate as the session's principal.

use std::collections::HashMap;
use std::fmt::Write as _;

use access::{Action, Principal, Role};
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use model::{Trigger, WritebackType};
use secrecy::SecretString;
use serde::Deserialize;

use crate::AdminState;
use crate::api::{self, HistoryParams, SettingsChangeRequest};
use crate::auth::{self, csrf_ok, csrf_token};
use crate::error::ApiError;

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(|| async { redirect("/practices") }))
        .route("/assets/app.css", get(css))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/practices", get(practices_page))
        .route(
            "/practices/{id}/settings",
            get(settings_page).post(settings_post),
        )
        .route("/practices/{id}/force", post(force_post))
        .route("/practices/{id}/resync", post(resync_post))
        .route("/history", get(history_page))
        .route("/dead-letters", get(dead_letters_page))
        .route("/dead-letters/redrive", post(redrive_post))
}

// ---- plumbing ------------------------------------------------------------

/// Text made safe for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment or query value made safe for a URL.
fn url_part(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
];

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

async fn css() -> Response {
    let mut response = CSS.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/css"));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    response
}

/// A signed-in person: the principal and the session's token (for the
/// CSRF tokens of the page's forms).
struct Session {
    who: Principal,
    token: SecretString,
}

impl Session {
    fn csrf(&self) -> String {
        csrf_token(&self.token)
    }

    fn is_admin(&self) -> bool {
        self.who.role == Role::CloudPmsAdmin
    }
}

/// Why a page is not shown: sign in first, or an error page.
enum PageError {
    SignIn { clear: bool },
    Shown(StatusCode, String),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError::Shown(e.status, e.message)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn { clear } => {
                let mut response = redirect("/login");
                if clear && let Ok(v) = HeaderValue::from_str(&auth::cleared_cookie()) {
                    response.headers_mut().insert(SET_COOKIE, v);
                }
                response
            }
            PageError::Shown(status, message) => {
                let body = layout(
                    "Something went wrong",
                    None,
                    &format!(
                        "<h1>{}</h1><p role=\"alert\" class=\"error\">{}</p>\
                         <p><a href=\"/practices\">Back to the practices</a></p>",
                        esc(status.canonical_reason().unwrap_or("Error")),
                        esc(&message)
                    ),
                    false,
                );
                html(status, body)
            }
        }
    }
}

async fn session(state: &AdminState, headers: &HeaderMap) -> Result<Session, PageError> {
    let Some(token) = auth::session(headers) else {
        return Err(PageError::SignIn { clear: false });
    };
    match auth::authenticate(&state.gate, &state.store, &token, "session").await {
        Ok(who) => Ok(Session { who, token }),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(PageError::SignIn { clear: true }),
        Err(e) => Err(e.into()),
    }
}

async fn allowed(state: &AdminState, s: &Session, action: &Action) -> Result<(), PageError> {
    state
        .gate
        .authorize(&s.who, action)
        .await
        .map_err(|e| PageError::from(ApiError::from(e)))
}

/// The form's fields, once its CSRF token is checked.
fn checked_form(
    s: &Session,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<HashMap<String, Vec<String>>, PageError> {
    let Form(pairs) = form.map_err(|r| {
        PageError::Shown(
            StatusCode::BAD_REQUEST,
            format!("the form could not be read: {}", r.body_text()),
        )
    })?;
    let mut fields: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in pairs {
        fields.entry(name).or_default().push(value);
    }
    let given = fields
        .get("csrf")
        .and_then(|v| v.first())
        .map(String::as_str)
        .unwrap_or("");
    if !csrf_ok(&s.token, given) {
        return Err(PageError::Shown(
            StatusCode::FORBIDDEN,
            "this form was not sent by a page of this site (its CSRF token is missing or \
             wrong): reload the page and try again"
                .into(),
        ));
    }
    Ok(fields)
}

fn field<'a>(fields: &'a HashMap<String, Vec<String>>, name: &str) -> Option<&'a str> {
    fields.get(name).and_then(|v| v.first()).map(String::as_str)
}

fn layout(title: &str, s: Option<&Session>, content: &str, refresh: bool) -> String {
    let mut nav = String::new();
    if let Some(s) = s {
        nav.push_str("<nav aria-label=\"Main\"><ul>");
        match (&s.who.role, &s.who.practice_id) {
            (Role::PracticeUser, Some(own)) => {
                let _ = write!(
                    nav,
                    "<li><a href=\"/practices/{0}/settings\">PMS Sync Settings</a></li>\
                     <li><a href=\"/history\">Sync History</a></li>",
                    url_part(own)
                );
            }
            _ => nav.push_str(
                "<li><a href=\"/practices\">Practices</a></li>\
                 <li><a href=\"/history?status=failures\">Sync History</a></li>\
                 <li><a href=\"/dead-letters\">Dead letters</a></li>",
            ),
        }
        let _ = write!(
            nav,
            "</ul><form method=\"post\" action=\"/logout\" class=\"inline\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <span class=\"who\">{} ({})</span> <button type=\"submit\">Sign out</button>\
             </form></nav>",
            esc(&s.csrf()),
            esc(&s.who.actor),
            esc(&s.who.role.to_string())
        );
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{refresh}\
         <title>{title} · ascend-sync</title><link rel=\"stylesheet\" href=\"/assets/app.css\">\
         </head><body><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><span class=\"brand\">ascend-sync</span>{nav}</header>\
         <main id=\"main\">{content}</main></body></html>",
        refresh = if refresh {
            "<meta http-equiv=\"refresh\" content=\"2\">"
        } else {
            ""
        },
        title = esc(title),
    )
}

fn ago(seconds: Option<i64>) -> String {
    match seconds {
        None => "never".into(),
        Some(s) if s < 60 => format!("{s} s ago"),
        Some(s) if s < 3600 => format!("{} min ago", s / 60),
        Some(s) if s < 86_400 => format!("{} h {} min ago", s / 3600, (s % 3600) / 60),
        Some(s) => format!("{} days ago", s / 86_400),
    }
}

// ---- sign in ---------------------------------------------------------------

async fn login_page() -> Response {
    html(StatusCode::OK, login_form(None))
}

fn login_form(error: Option<&str>) -> String {
    let error = error
        .map(|e| {
            format!(
                "<p role=\"alert\" class=\"error\" id=\"login-error\">{}</p>",
                esc(e)
            )
        })
        .unwrap_or_default();
    layout(
        "Sign in",
        None,
        &format!(
            "<h1>Sign in</h1>{error}<form method=\"post\" action=\"/login\" class=\"card\">\
             <label for=\"token\">Admin token</label>\
             <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required \
             aria-describedby=\"token-help\">\
             <p id=\"token-help\" class=\"help\">A token from <code>ascend-sync admin-token \
             create</code>, given to you by the Cloud PMS Admin team.</p>\
             <button type=\"submit\">Sign in</button></form>"
        ),
        false,
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(state): State<AdminState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return html(
            StatusCode::BAD_REQUEST,
            login_form(Some("Enter your admin token.")),
        );
    };
    let token = SecretString::from(form.token.trim().to_owned());
    match auth::authenticate(&state.gate, &state.store, &token, "sign-in").await {
        Ok(who) => {
            let to = match (&who.role, &who.practice_id) {
                (Role::PracticeUser, Some(own)) => format!("/practices/{}/settings", url_part(own)),
                _ => "/practices".to_owned(),
            };
            let mut response = redirect(&to);
            if let Ok(v) = HeaderValue::from_str(&auth::session_cookie(&token)) {
                response.headers_mut().insert(SET_COOKIE, v);
            }
            response
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => html(
            StatusCode::UNAUTHORIZED,
            login_form(Some(
                "That token is not valid. Check it, or ask for a new one.",
            )),
        ),
        Err(e) => PageError::from(e).into_response(),
    }
}

async fn logout(
    State(state): State<AdminState>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    let s = session(&state, &headers).await?;
    checked_form(&s, form)?;
    Err(PageError::SignIn { clear: true })
}

// ---- practices ---------------------------------------------------------------

async fn practices_page(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let s = session(&state, &headers).await?;
    if let (Role::PracticeUser, Some(own)) = (&s.who.role, &s.who.practice_id) {
        return Ok(redirect(&format!("/practices/{}/settings", url_part(own))));
    }
    allowed(&state, &s, &Action::ViewFleet).await?;
    let practices = api::practice_views(&state, None).await?;
    let mut rows = String::new();
    let mut running = false;
    for p in &practices {
        let stale = if p.stale {
            format!(
                "<span class=\"badge stale\">Stale</span> <span class=\"help\">{}</span>",
                esc(p.stale_reason.as_deref().unwrap_or(""))
            )
        } else if p.status == "active" {
            "<span class=\"badge fresh\">Fresh</span>".to_owned()
        } else {
            "–".to_owned()
        };
        let progress = match &p.progress {
            Some(pr) => {
                running = true;
                let (value, max) = (pr.landed, pr.expected.unwrap_or(0).max(pr.landed).max(1));
                let pct = value.saturating_mul(100) / max;
                format!(
                    "<progress value=\"{value}\" max=\"{max}\" aria-label=\"initial sync of \
                     {id}\">{pct}%</progress> <span class=\"help\">{value} / {} records</span>",
                    pr.expected
                        .map_or_else(|| "?".to_owned(), |e| e.to_string()),
                    id = esc(&p.practice_id),
                )
            }
            None => String::new(),
        };
        let _ = write!(
            rows,
            "<tr class=\"{cls}\" data-practice=\"{id}\"><th scope=\"row\">\
             <a href=\"/practices/{url}/settings\">{id}</a></th><td><span class=\"status \
             {status}\">{status}</span>{progress}</td><td>every {interval} min</td>\
             <td>{last}</td><td>{stale}</td><td>{q}</td><td>{d}</td></tr>",
            cls = if p.stale { "is-stale" } else { "" },
            id = esc(&p.practice_id),
            url = url_part(&p.practice_id),
            status = esc(&p.status),
            interval = p.sync_interval_minutes,
            last = esc(&ago(p.age_seconds)),
            q = p.quarantined,
            d = p.deletes_pending,
        );
    }
    let content = format!(
        "<h1>Practices</h1><p>{} practices. A practice is stale when its last successful \
         sync is older than twice its interval and five minutes, or when data is missing.</p>\
         <table><caption class=\"visually-hidden\">Every practice</caption><thead><tr>\
         <th scope=\"col\">Practice</th><th scope=\"col\">Status</th>\
         <th scope=\"col\">Interval</th><th scope=\"col\">Last success</th>\
         <th scope=\"col\">Freshness</th><th scope=\"col\">Quarantined</th>\
         <th scope=\"col\">Deletes pending</th></tr></thead><tbody>{rows}</tbody></table>",
        practices.len()
    );
    Ok(html(
        StatusCode::OK,
        layout("Practices", Some(&s), &content, running),
    ))
}

#[derive(Deserialize, Default)]
struct Flash {
    done: Option<String>,
}

fn flash_text(flash: &Flash) -> Option<&'static str> {
    match flash.done.as_deref()? {
        "saved" => Some("Settings saved."),
        "enqueued" => Some("Sync requested: it runs ahead of scheduled work."),
        "already_queued" => Some("A sync of this practice is already queued."),
        "already_running" => Some("A sync of this practice is running now."),
        "initial_sync_running" => Some("The initial sync is running and now goes first."),
        "resync" => Some("Resync requested: the history is pulled again."),
        "redriven" => Some("Dead letters moved back to the queue."),
        _ => None,
    }
}

async fn settings_page(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    flash: Result<Query<Flash>, QueryRejection>,
) -> Result<Response, PageError> {
    let s = session(&state, &headers).await?;
    let id = api::practice_id(&id)?;
    allowed(&state, &s, &Action::ViewPractice(id.clone())).await?;
    let practice = api::practice_views(&state, Some(&id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found(format!("no practice {id:?}")))?;
    let settings = api::settings_view(&state, &id).await?;
    let flash = flash.map(|Query(f)| f).unwrap_or_default();
    let may_change = access::decide(&s.who, &Action::UpdateSettings(id.clone())).is_ok();
    let may_force = access::decide(&s.who, &Action::ForceSync(id.clone())).is_ok();
    let syncing = practice.inflight_job_id.is_some()
        || practice.last_run_status.as_deref() == Some("running");
    let csrf = esc(&s.csrf());
    let mut content = format!("<h1>PMS Sync Settings <small>{}</small></h1>", esc(&id));
    if let Some(text) = flash_text(&flash) {
        let _ = write!(content, "<p role=\"status\" class=\"flash\">{text}</p>");
    }
    let _ = write!(
        content,
        "<section class=\"card\" aria-labelledby=\"conn\"><h2 id=\"conn\">Connection</h2>\
         <dl><dt>Status</dt><dd><span class=\"status {st}\" id=\"status\">{st}</span> {detail}</dd>\
         <dt>Last successful sync</dt><dd id=\"last-sync\">{last}</dd>\
         <dt>Freshness</dt><dd>{fresh}</dd></dl>",
        st = esc(&practice.status),
        detail = esc(practice.status_detail.as_deref().unwrap_or("")),
        last = esc(&ago(practice.age_seconds)),
        fresh = if practice.stale {
            format!(
                "<span class=\"badge stale\">Stale</span> {}",
                esc(practice.stale_reason.as_deref().unwrap_or(""))
            )
        } else {
            "<span class=\"badge fresh\">Fresh</span>".to_owned()
        },
    );
    if let Some(pr) = &practice.progress {
        let max = pr.expected.unwrap_or(0).max(pr.landed).max(1);
        let _ = write!(
            content,
            "<p>Initial sync: <progress value=\"{}\" max=\"{max}\" aria-label=\"initial \
             sync\"></progress> {} of {} records</p>",
            pr.landed,
            pr.landed,
            pr.expected
                .map_or_else(|| "?".to_owned(), |e| e.to_string())
        );
    }
    if syncing {
        content.push_str(
            "<p role=\"status\" class=\"syncing\" id=\"sync-running\">A sync is under way; \
             this page refreshes until it ends.</p>",
        );
    }
    if may_force {
        let _ = write!(
            content,
            "<form method=\"post\" action=\"/practices/{url}/force\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" id=\"force\"{dis}>Force Sync Now</button></form>",
            url = url_part(&id),
            dis = if syncing { " disabled" } else { "" },
        );
    }
    content.push_str("</section>");
    let disabled = if may_change { "" } else { " disabled" };
    let mut interval = String::new();
    for m in &settings.intervals {
        let _ = write!(
            interval,
            "<option value=\"{m}\"{}>every {m} minutes{}</option>",
            if *m == settings.sync_interval_minutes {
                " selected"
            } else {
                ""
            },
            if *m == 15 { " (standard)" } else { "" }
        );
    }
    let mut toggles = String::new();
    for t in &settings.writeback {
        let label = WritebackType::ALL
            .iter()
            .find(|w| w.as_str() == t.kind)
            .map_or(t.kind.as_str(), |w| type_label(*w));
        let _ = write!(
            toggles,
            "<div class=\"toggle\"><input type=\"checkbox\" id=\"wb-{k}\" name=\"wb\" \
             value=\"{k}\"{checked}{disabled}><label for=\"wb-{k}\">{label}</label></div>",
            k = esc(&t.kind),
            checked = if t.enabled { " checked" } else { "" },
        );
    }
    let _ = write!(
        content,
        "<form method=\"post\" action=\"/practices/{url}/settings\" class=\"card\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <h2>Sync interval</h2><label for=\"interval\">Sync this practice</label>\
         <select id=\"interval\" name=\"interval\"{disabled}>{interval}</select>\
         <fieldset><legend>Write-back: what may be written into Ascend</legend>{toggles}\
         </fieldset><label for=\"note-provider\">Provider SMS notes are attributed to \
         (Ascend provider id)</label><input id=\"note-provider\" name=\"note_provider_id\" \
         inputmode=\"numeric\" value=\"{np}\"{disabled}>\
         <button type=\"submit\" id=\"save\"{disabled}>Save settings</button></form>\
         <p><a href=\"/history?practice={url}\">This practice's sync history</a></p>",
        url = url_part(&id),
        np = settings
            .note_provider_id
            .map(|n| n.to_string())
            .unwrap_or_default(),
    );
    Ok(html(
        StatusCode::OK,
        layout("PMS Sync Settings", Some(&s), &content, syncing),
    ))
}

fn type_label(t: WritebackType) -> &'static str {
    match t {
        WritebackType::SmsLog => "SMS logs, as patient notes",
        WritebackType::EmailLog => "Email logs",
        WritebackType::CallLog => "Call logs",
        WritebackType::Confirmation => "Appointment confirmations",
        WritebackType::Document => "Documents",
        WritebackType::NewPatient => "New patients",
        WritebackType::NewAppointment => "New appointments",
    }
}

async fn settings_post(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    let s = session(&state, &headers).await?;
    let id = api::practice_id(&id)?;
    let fields = checked_form(&s, form)?;
    allowed(&state, &s, &Action::UpdateSettings(id.clone())).await?;
    let current = api::settings_view(&state, &id).await?;
    let interval = match field(&fields, "interval") {
        Some(text) => Some(text.parse::<i16>().map_err(|_| {
            ApiError::invalid(format!("the interval {text:?} is not a number of minutes"))
        })?),
        None => None,
    };
    let wanted: Vec<&str> = fields
        .get("wb")
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let mut writeback = std::collections::BTreeMap::new();
    for t in &current.writeback {
        let on = wanted.contains(&t.kind.as_str());
        if on != t.enabled {
            writeback.insert(t.kind.clone(), on);
        }
    }
    for name in &wanted {
        if !current.writeback.iter().any(|t| t.kind == *name) {
            writeback.insert((*name).to_owned(), true);
        }
    }
    let note_provider_id = match field(&fields, "note_provider_id").map(str::trim) {
        None => None,
        Some("") if current.note_provider_id.is_some() => Some(0),
        Some("") => None,
        Some(text) => {
            let n: u64 = text.parse().map_err(|_| {
                ApiError::invalid(format!("the provider id {text:?} is not a number"))
            })?;
            (current.note_provider_id != Some(n)).then_some(n)
        }
    };
    let change = SettingsChangeRequest {
        sync_interval_minutes: interval.filter(|m| *m != current.sync_interval_minutes),
        writeback: (!writeback.is_empty()).then_some(writeback),
        note_provider_id,
        nightly: None,
    };
    api::change_settings(&state, &id, &change, &s.who.actor).await?;
    Ok(redirect(&format!(
        "/practices/{}/settings?done=saved",
        url_part(&id)
    )))
}

async fn force_post(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    let s = session(&state, &headers).await?;
    let id = api::practice_id(&id)?;
    checked_form(&s, form)?;
    allowed(&state, &s, &Action::ForceSync(id.clone())).await?;
    let decision = control::force_sync_by(
        &state.store,
        &state.queue,
        &id,
        Trigger::Force,
        &s.who.actor,
    )
    .await
    .map_err(ApiError::from)?;
    let view = api::force_view(&decision);
    if view.outcome == "not_syncable" {
        return Err(PageError::Shown(StatusCode::CONFLICT, view.message));
    }
    Ok(redirect(&format!(
        "/practices/{}/settings?done={}",
        url_part(&id),
        view.outcome
    )))
}

async fn resync_post(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    let s = session(&state, &headers).await?;
    let id = api::practice_id(&id)?;
    let fields = checked_form(&s, form)?;
    let tables = api::resources(field(&fields, "resource"))?;
    allowed(&state, &s, &Action::Resync(id.clone())).await?;
    control::admin::resync(&state.store, &state.queue, &id, &tables, &s.who.actor)
        .await
        .map_err(ApiError::from)?;
    Ok(redirect(&format!(
        "/history?practice={}&done=resync",
        url_part(&id)
    )))
}

// ---- history ---------------------------------------------------------------

#[derive(Deserialize, Default)]
struct HistoryPageParams {
    practice: Option<String>,
    status: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

async fn history_page(
    State(state): State<AdminState>,
    headers: HeaderMap,
    params: Result<Query<HistoryPageParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let s = session(&state, &headers).await?;
    let params = params.map(|Query(p)| p).unwrap_or_default();
    let mut practice = params.practice.clone().filter(|p| !p.is_empty());
    if let (Role::PracticeUser, Some(own)) = (&s.who.role, &s.who.practice_id) {
        practice.get_or_insert_with(|| own.clone());
    }
    let since = params.since.as_deref().filter(|t| !t.is_empty()).map(|t| {
        if t.len() == 10 {
            format!("{t}T00:00:00Z")
        } else {
            t.to_owned()
        }
    });
    let filter = api::history_filter(&HistoryParams {
        practice: practice.clone(),
        status: params.status.clone(),
        kind: None,
        since,
        cursor: params.cursor.clone(),
        limit: Some(50),
    })?;
    let action = match &filter.practice_id {
        Some(p) => Action::ViewPractice(p.clone()),
        None => Action::ViewFleet,
    };
    allowed(&state, &s, &action).await?;
    let page = api::history_page(&state, filter).await?;
    let may_resync = s.is_admin();
    let csrf = esc(&s.csrf());
    let mut rows = String::new();
    for r in &page.runs {
        let failure = matches!(
            r.status.as_str(),
            "failed" | "partial" | "retrying" | "dead_lettered"
        );
        let resync = if failure && may_resync && !r.practice_id.is_empty() {
            format!(
                "<form method=\"post\" action=\"/practices/{}/resync\" class=\"inline\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" class=\"resync\">Resync</button></form>",
                url_part(&r.practice_id)
            )
        } else {
            String::new()
        };
        let error = match (&r.error_class, &r.error_message) {
            (Some(c), Some(m)) => format!("<strong>{}</strong>: {}", esc(c), esc(m)),
            (Some(c), None) => esc(c),
            (None, Some(m)) => esc(m),
            (None, None) => String::new(),
        };
        let _ = write!(
            rows,
            "<tr class=\"run {status}\" data-run=\"{run}\"><td>{started}</td><td>{practice}</td>\
             <td>{kind} ({trigger})</td><td><span class=\"status {status}\">{status}</span></td>\
             <td>{fetched}</td><td class=\"err\">{error}</td><td>{resync}</td></tr>",
            status = esc(&r.status),
            run = esc(&r.run_id),
            started = esc(&r.started_at),
            practice = esc(&r.practice_id),
            kind = esc(&r.kind),
            trigger = esc(&r.trigger),
            fetched = r.fetched.unwrap_or(0),
        );
    }
    let status_options = ["", "failures", "succeeded", "partial", "failed", "running"]
        .iter()
        .map(|v| {
            format!(
                "<option value=\"{v}\"{}>{}</option>",
                if params.status.as_deref().unwrap_or("") == *v {
                    " selected"
                } else {
                    ""
                },
                if v.is_empty() { "any" } else { v }
            )
        })
        .collect::<String>();
    let practice_field = if s.who.role == Role::PracticeUser {
        String::new()
    } else {
        format!(
            "<label for=\"f-practice\">Practice</label><input id=\"f-practice\" \
             name=\"practice\" value=\"{}\">",
            esc(practice.as_deref().unwrap_or(""))
        )
    };
    let mut content = String::from("<h1>Sync History</h1>");
    if params.done.as_deref() == Some("resync") {
        content.push_str(
            "<p role=\"status\" class=\"flash\">Resync requested: the history is pulled \
             again.</p>",
        );
    }
    let _ = write!(
        content,
        "<form method=\"get\" action=\"/history\" class=\"filters\">{practice_field}\
         <label for=\"f-status\">Status</label><select id=\"f-status\" name=\"status\">\
         {status_options}</select><label for=\"f-since\">Since</label>\
         <input id=\"f-since\" name=\"since\" type=\"date\" value=\"{since}\">\
         <button type=\"submit\" id=\"filter\">Filter</button></form>\
         <table><caption class=\"visually-hidden\">Sync attempts, newest first</caption>\
         <thead><tr><th scope=\"col\">Started</th><th scope=\"col\">Practice</th>\
         <th scope=\"col\">Kind</th><th scope=\"col\">Status</th><th scope=\"col\">Records</th>\
         <th scope=\"col\">Error</th><th scope=\"col\"><span class=\"visually-hidden\">\
         Actions</span></th></tr></thead><tbody>{rows}</tbody></table>",
        since = esc(params
            .since
            .as_deref()
            .unwrap_or("")
            .get(..10)
            .unwrap_or("")),
    );
    if page.runs.is_empty() {
        content.push_str("<p>No attempts match.</p>");
    }
    if let Some(next) = &page.next_cursor {
        let mut query = format!("cursor={}", url_part(next));
        if let Some(p) = &practice {
            let _ = write!(query, "&practice={}", url_part(p));
        }
        if let Some(st) = &params.status {
            let _ = write!(query, "&status={}", url_part(st));
        }
        let _ = write!(
            content,
            "<p><a href=\"/history?{}\" rel=\"next\">Older attempts</a></p>",
            esc(&query)
        );
    }
    Ok(html(
        StatusCode::OK,
        layout("Sync History", Some(&s), &content, false),
    ))
}

// ---- dead letters ------------------------------------------------------------

async fn dead_letters_page(
    State(state): State<AdminState>,
    headers: HeaderMap,
    flash: Result<Query<Flash>, QueryRejection>,
) -> Result<Response, PageError> {
    let s = session(&state, &headers).await?;
    allowed(&state, &s, &Action::ViewFleet).await?;
    let letters = api::dead_letter_views(&state).await?;
    let may_redrive = access::decide(&s.who, &Action::RedriveDeadLetters).is_ok();
    let csrf = esc(&s.csrf());
    let mut rows = String::new();
    for d in &letters {
        let button = if may_redrive {
            format!(
                "<form method=\"post\" action=\"/dead-letters/redrive\" class=\"inline\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"message_id\" value=\"{}\">\
                 <button type=\"submit\">Redrive</button></form>",
                esc(&d.message_id)
            )
        } else {
            String::new()
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{button}</td></tr>",
            esc(d.practice_id.as_deref().unwrap_or("?")),
            esc(d.kind.as_deref().unwrap_or("unreadable")),
            esc(d.job_id.as_deref().unwrap_or("")),
            d.receive_count,
            esc(d
                .reason
                .as_deref()
                .unwrap_or("too many deliveries: see Sync History")),
        );
    }
    let mut content = String::from("<h1>Dead letters</h1>");
    if let Some(text) = flash.ok().map(|Query(f)| f).as_ref().and_then(flash_text) {
        let _ = write!(content, "<p role=\"status\" class=\"flash\">{text}</p>");
    }
    if letters.is_empty() {
        content.push_str("<p>No dead letters.</p>");
    } else {
        let _ = write!(
            content,
            "<table><thead><tr><th scope=\"col\">Practice</th><th scope=\"col\">Job</th>\
             <th scope=\"col\">Job id</th><th scope=\"col\">Deliveries</th>\
             <th scope=\"col\">Reason</th><th scope=\"col\"><span class=\"visually-hidden\">\
             Actions</span></th></tr></thead><tbody>{rows}</tbody></table>"
        );
        if may_redrive {
            let _ = write!(
                content,
                "<form method=\"post\" action=\"/dead-letters/redrive\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" id=\"redrive-all\">Redrive all</button></form>"
            );
        }
    }
    Ok(html(
        StatusCode::OK,
        layout("Dead letters", Some(&s), &content, false),
    ))
}

async fn redrive_post(
    State(state): State<AdminState>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    let s = session(&state, &headers).await?;
    let fields = checked_form(&s, form)?;
    allowed(&state, &s, &Action::RedriveDeadLetters).await?;
    api::redrive_as(&state, field(&fields, "message_id"), &s.who.actor).await?;
    Ok(redirect("/dead-letters?done=redriven"))
}

const CSS: &str = r#"
:root { --fg: #1b1f24; --muted: #4a5360; --bg: #ffffff; --line: #c9d1db; --accent: #0b5cad;
  --stale: #a4000f; --fresh: #0f6b2f; --warn-bg: #fff4e5; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 1rem; padding: .75rem 1.5rem; border-bottom: 1px solid var(--line); }
.brand { font-weight: 700; }
nav { display: flex; flex: 1; align-items: center; justify-content: space-between; gap: 1rem; }
nav ul { display: flex; gap: 1rem; list-style: none; margin: 0; padding: 0; }
a { color: var(--accent); }
main { padding: 1.5rem; max-width: 72rem; }
h1 small { color: var(--muted); font-weight: 400; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
tr.is-stale { background: var(--warn-bg); }
.badge { display: inline-block; padding: 0 .5rem; border-radius: .75rem; font-size: .85rem; font-weight: 600; }
.badge.stale { background: var(--stale); color: #fff; }
.badge.fresh { background: var(--fresh); color: #fff; }
.status { font-weight: 600; }
.help { color: var(--muted); font-size: .9rem; }
.card { border: 1px solid var(--line); border-radius: .5rem; padding: 1rem 1.25rem; margin: 1rem 0; }
.flash { background: #e6f2ff; border-left: 4px solid var(--accent); padding: .5rem 1rem; }
.syncing { background: var(--warn-bg); padding: .5rem 1rem; }
.error { color: var(--stale); font-weight: 600; }
label { display: block; margin-top: .75rem; font-weight: 600; }
.toggle label, .filters label { display: inline; margin: 0 .5rem 0 .25rem; }
.toggle { margin: .25rem 0; }
input, select, button { font: inherit; padding: .35rem .6rem; }
button { background: var(--accent); color: #fff; border: 0; border-radius: .35rem; cursor: pointer; margin-top: .75rem; }
button[disabled] { background: #8a96a3; cursor: not-allowed; }
form.inline { display: inline; }
form.inline button { margin: 0; }
fieldset { border: 1px solid var(--line); margin-top: 1rem; }
:focus-visible { outline: 3px solid #ffbf47; outline-offset: 2px; }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 1rem; top: 1rem; background: #fff; padding: .5rem; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
progress { width: 10rem; vertical-align: middle; }
td.err { max-width: 28rem; overflow-wrap: anywhere; }
"#;
