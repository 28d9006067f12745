/* relay's sequence view: one renderer for `relay show --html` and the control page /_relay/.
 *
 * Draws the model of relay/html.py (GET /_relay/timeline answers the same): one lane per
 * desktop and one for the server, a row per event in time order with its time on the side,
 * REST exchanges as arrows to the server with the status coming back, notifications as arrows
 * to the desktop with channel, call, state and capabilities, and a bracket in the gutter from
 * each exchange to the notifications it caused.
 *
 * Plain JavaScript, no dependencies, no network. Cassette text is only ever written with
 * textContent or as an attribute value, never parsed as HTML. Work is linear in the rows.
 *
 *   RelayTimeline.header(element, model, view)  title, counts, notes (the show page); `view`
 *                                               is the render() element (a chips toggle)
 *   const view = RelayTimeline.render(element, model)
 *   view.mark(status)                           the control page: status of GET /_relay/status
 */
(function (global) {
  "use strict";

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function token(text) {
    // A class-name-safe form of a cassette word (a call state, a method).
    return String(text).toLowerCase().replace(/[^a-z0-9_-]+/g, "-").slice(0, 40);
  }

  function seconds(ms) {
    const s = Math.abs(ms) / 1000;
    return (s >= 10 ? s.toFixed(1) : s.toFixed(3).replace(/0+$/, "").replace(/\.$/, "")) + " s";
  }

  const CALL_COLOURS = 8; // .rt-call-0 ... .rt-call-7 in timeline.css
  const LOST_SHOWN = 5; // more lost capabilities than this are summed up as "−N"
  const GAP_MS = 2000; // a pause at least this long is drawn as a break between rows

  function lanePositions(count) {
    // Percent positions of the lifelines in the stage: desktops spread on the left part,
    // the server at the right edge.
    const left = 3, right = 97;
    if (count <= 2) return [left, right];
    const step = (right - left) / (count - 1);
    return Array.from({length: count}, (_, i) => left + i * step);
  }

  function header(container, model, view) {
    container.replaceChildren();
    container.classList.add("rt-header");
    container.append(el("h1", "rt-title", model.title || "(untitled cassette)"));
    const st = model.stats || {};
    const facts = el("dl", "rt-facts");
    const fact = (name, value) => {
      if (!value) return;
      facts.append(el("dt", "", name), el("dd", "", value));
    };
    fact("upstream", model.upstream);
    const recorded = (model.recorded_at || "at an unknown time") +
      (model.relay_version ? " by relay " + model.relay_version : "");
    fact("recorded", recorded);
    fact("desktops", model.lanes.filter(l => l.kind === "desktop").map(l => l.name).join(", "));
    fact("events", `${st.events} over ${seconds(st.span_ms || 0)}: ` +
      `${st.exchanges} exchanges (${st.failed} failed), ` +
      `${st.notifications} notifications (${st.caused} caused, ${st.unsolicited} unsolicited)`);
    container.append(facts);
    if (model.notes) {
      const notes = el("details", "rt-notes");
      notes.append(el("summary", "", "notes"), el("p", "", model.notes));
      container.append(notes);
    }
    const legend = el("div", "rt-legend");
    legend.append(
      el("span", "rt-key rt-key-req", "REST request → server, status back"),
      el("span", "rt-key rt-key-fail", "failed exchange"),
      el("span", "rt-key rt-key-note", "notification → desktop"),
      el("span", "rt-key rt-key-link", "bracket: the exchange that caused it"),
      el("span", "rt-chip rt-gained", "+gained"),
      el("span", "rt-chip rt-lost", "lost"),
    );
    if (view) {
      // Long cassettes read faster without the capability chips.
      const toggle = el("label", "rt-toggle");
      const box = el("input");
      box.type = "checkbox";
      box.checked = true;
      box.addEventListener("change", () => view.classList.toggle("rt-no-caps", !box.checked));
      toggle.append(box, " capabilities");
      legend.append(toggle);
    }
    container.append(legend);
  }

  function laneHead(model, xs, tracks) {
    const row = el("div", "rt-row rt-head");
    row.append(el("div", "rt-time", "time"), el("div", "rt-id", "id"));
    const stage = el("div", "rt-stage");
    model.lanes.forEach((lane, i) => {
      const box = el("div", "rt-lane rt-lane-" + lane.kind);
      box.style.left = xs[i] + "%";
      box.append(el("span", "rt-lane-kind", lane.kind === "server" ? "server" : "desktop"));
      box.append(el("span", "rt-lane-name", lane.kind === "server" ? (model.upstream || "GWS") : lane.name));
      if (lane.kind === "server") box.title = "the Genesys Web Services API the cassette was recorded from";
      stage.append(box);
    });
    row.append(stage, el("div", "rt-gutter"), el("div", "rt-cause", "cause"));
    return row;
  }

  function chip(text, cls, title) {
    const c = el("span", "rt-chip " + (cls || ""), text);
    if (title) c.title = title;
    return c;
  }

  function exchangeBody(e) {
    const label = el("div", "rt-label");
    label.append(el("span", "rt-method rt-method-" + token(e.method), e.method));
    label.append(el("span", "rt-op", e.operation || e.target_short || e.path));
    if (e.operation) {
      const path = el("span", "rt-path", e.target_short || e.path);
      path.title = e.target || e.path;
      label.append(path);
    }
    const arrow = el("div", "rt-arrow rt-to-server");
    const back = el("div", "rt-arrow rt-return " + (e.status !== undefined ? "rt-to-desktop" : "rt-no-answer"));
    const status = el("span", "rt-status");
    if (e.status !== undefined) {
      status.append(el("b", "", e.status));
      if (e.reason) status.append(" " + e.reason);
    } else {
      status.append(el("b", "", "no answer"));
    }
    if (e.latency_ms !== null && e.latency_ms !== undefined) status.append(el("span", "rt-muted", ` ${e.latency_ms} ms`));
    if (e.error) {
      const err = el("span", "rt-error", " " + e.error);
      err.title = e.error;
      status.append(err);
    }
    back.append(status);
    return [label, arrow, back];
  }

  function notificationBody(e) {
    const label = el("div", "rt-label");
    if (e.state) label.append(el("span", "rt-state rt-state-" + token(e.state), e.state));
    if (e.call_id) {
      const c = el("span", "rt-call rt-call-" + ((e.call_index ?? 0) % CALL_COLOURS), "call " + (e.call_short || e.call_id));
      c.title = "call " + e.call_id;
      label.append(c);
    }
    if (e.call_type) label.append(el("span", "rt-calltype", e.call_type));
    const kind = e.notification_type || e.message_type;
    const ch = el("span", "rt-channel", e.channel + (kind ? " · " + kind : ""));
    if (e.message_type) ch.title = e.message_type + (e.notification_type ? " " + e.notification_type : "");
    label.append(ch);
    const arrow = el("div", "rt-arrow rt-to-desktop rt-push");
    const parts = [label, arrow];
    if (e.capabilities) {
      const caps = el("div", "rt-caps");
      const gained = new Set(e.gained || []);
      for (const c of e.capabilities) {
        caps.append(gained.has(c) ? chip("+" + c, "rt-gained", "capability gained") : chip(c));
      }
      const lost = e.lost || [];
      if (lost.length > LOST_SHOWN) {
        caps.append(chip("−" + lost.length + " capabilities lost", "rt-lost rt-lost-sum", "lost: " + lost.join(", ")));
      } else {
        for (const c of lost) caps.append(chip(c, "rt-lost", "capability lost"));
      }
      if (!e.capabilities.length && !lost.length) caps.append(el("span", "rt-muted", "no capabilities"));
      parts.push(caps);
    }
    return parts;
  }

  function render(container, model) {
    container.replaceChildren();
    container.classList.add("rt-view");
    const lanes = model.lanes;
    const xs = lanePositions(lanes.length);
    const server = lanes.length - 1;
    const tracks = Math.max(model.tracks || 0, 1);
    container.style.setProperty("--rt-tracks", String(tracks));
    const rows = [];
    const byId = new Map();
    const linkRows = (model.links || []).map(link => link.rows);

    // Gutter cells: for each row, the part of every link that passes through it.
    const segments = model.events.map(() => new Array(tracks).fill(null));
    (model.links || []).forEach((link, k) => {
      const first = link.rows[0], last = link.rows[link.rows.length - 1];
      const nodes = new Set(link.rows);
      for (let r = first; r <= last; r++) {
        const where = first === last ? "one" : r === first ? "first" : r === last ? "last" : "mid";
        segments[r][link.track] = {link: k, where, node: nodes.has(r), cause: r === first};
      }
    });

    container.append(laneHead(model, xs, tracks));
    const body = el("div", "rt-body");
    container.append(body);
    for (const e of model.events) {
      const isX = e.kind === "exchange";
      const row = el("div", "rt-row " + (isX ? "rt-exchange" : "rt-notification"));
      if (isX && e.failed) row.classList.add("rt-failed");
      if (!isX && e.unsolicited) row.classList.add("rt-unsolicited");
      if (e.delta_ms !== null && e.delta_ms >= GAP_MS) row.classList.add("rt-gap");
      row.dataset.eventId = e.id;
      row.dataset.index = String(e.index);
      row.title = e.label || "";

      const time = el("div", "rt-time");
      time.append(el("span", "rt-t", e.time));
      if (e.delta_ms !== null && e.delta_ms >= GAP_MS) time.append(el("span", "rt-delta", "+" + seconds(e.delta_ms)));
      const id = el("div", "rt-id", e.id);

      const stage = el("div", "rt-stage");
      xs.forEach(x => {
        const life = el("div", "rt-life");
        life.style.left = x + "%";
        stage.append(life);
      });
      const from = xs[e.desktop], to = xs[server];
      const msg = el("div", "rt-msg");
      msg.style.marginLeft = from + "%";
      msg.style.width = (to - from) + "%";
      msg.append(...(isX ? exchangeBody(e) : notificationBody(e)));
      stage.append(msg);

      const gutter = el("div", "rt-gutter");
      for (const seg of segments[e.index]) {
        const cell = el("div", "rt-track");
        if (seg) {
          cell.classList.add("rt-seg", "rt-seg-" + seg.where);
          if (seg.node) cell.classList.add(seg.cause ? "rt-seg-cause" : "rt-seg-node");
          cell.dataset.link = String(seg.link);
        }
        gutter.append(cell);
      }

      const cause = el("div", "rt-cause");
      const markers = el("div", "rt-markers");
      cause.append(markers);
      if (isX) {
        if (e.caused && e.caused.length) {
          cause.append(el("span", "rt-muted", "caused "));
          e.caused.forEach(cid => cause.append(jump(cid, cid)));
        }
      } else if (e.unsolicited) {
        cause.append(el("span", "rt-badge rt-badge-unsolicited", "unsolicited"));
      } else if (e.cause) {
        cause.append(jump(e.cause, "← " + e.cause + (e.cause_operation ? " " + e.cause_operation : "")));
      }
      row.append(time, id, stage, gutter, cause);
      row.rtMarkers = markers;
      if (e.link !== undefined) {
        row.addEventListener("mouseenter", () => highlight(e.link, true));
        row.addEventListener("mouseleave", () => highlight(e.link, false));
      }
      rows.push(row);
      byId.set(e.id, row);
      body.append(row);
    }
    if (!model.events.length) body.append(el("p", "rt-empty", "(no events)"));

    function highlight(link, on) {
      for (const r of linkRows[link] || []) rows[r].classList.toggle("rt-hl", on);
    }

    function jump(targetId, text) {
      const j = el("button", "rt-jump", text);
      j.type = "button";
      j.title = "show " + targetId;
      j.addEventListener("click", () => {
        const target = byId.get(targetId);
        if (!target) return;
        target.scrollIntoView({block: "center", behavior: "smooth"});
        target.classList.remove("rt-flash");
        void target.offsetWidth; // restart the animation
        target.classList.add("rt-flash");
      });
      return j;
    }

    let marked = [];
    let lastNext = "";
    function mark(status) {
      // The control page: released events dimmed (GETs once answered), a marker per session
      // on its next event, and the rest of the group the next release lets go with it.
      for (const row of marked) {
        row.classList.remove("released", "rt-is-next", "rt-in-group");
        row.rtMarkers.replaceChildren();
      }
      marked = [];
      const sessions = (status && status.sessions) || [];
      // Released: by every session (with one desktop, by it); the markers say where each is.
      const times = new Map();
      for (const s of sessions) {
        for (const rid of [...(s.released || []), ...(s.gets_served || [])]) {
          times.set(rid, (times.get(rid) || 0) + 1);
        }
      }
      for (const [rid, n] of times) {
        const row = byId.get(rid);
        if (row && n === sessions.length) { row.classList.add("released"); marked.push(row); }
      }
      const nextIds = [];
      for (const s of sessions) {
        const row = s.next && byId.get(s.next.id);
        if (!row) continue;
        row.classList.add("rt-is-next");
        const m = el("span", "rt-next-marker");
        m.dataset.sessionNext = s.id;
        m.append(el("b", "", "▶ " + s.id));
        if (s.waiting_for) m.append(" waits for " + s.waiting_for);
        row.rtMarkers.append(m);
        marked.push(row);
        nextIds.push(s.next.id);
        for (const gid of (s.next_group || []).slice(1)) {
          const member = byId.get(gid);
          if (!member) continue;
          member.classList.add("rt-in-group");
          const g = el("span", "rt-group-marker", "with ▶ " + s.id);
          g.dataset.sessionGroup = s.id;
          g.title = "released together with " + s.next.id + " (the same exchange caused both)";
          member.rtMarkers.append(g);
          marked.push(member);
        }
      }
      const key = nextIds.join(",");
      if (key && key !== lastNext) {
        byId.get(nextIds[0]).scrollIntoView({block: "nearest"});
      }
      lastNext = key;
    }

    return {rows: byId, mark};
  }

  global.RelayTimeline = {render, header};
})(window);
