// The space page: listener (hls.js), speaker (WHIP) and host controls.
"use strict";
(() => {
  const T = JSON.parse(document.getElementById("strings").textContent);
  const spaceId = document.body.dataset.space;
  const base = `/live/${spaceId}/`;
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.hash.slice(1));
  // A host or speaker link carries its token in the fragment; a listener invited on stage
  // gets one when accepting.
  let token = params.get("token");
  const player = $("player");
  let hls = null;
  let lastStatus = null;

  // hls.js settings, chosen for about one second from mouth to ear (bench/ear.py measures
  // it in this page): lowLatencyMode follows parts and blocking reloads; liveSyncDuration
  // stays unset so the playlist's PART-HOLD-BACK (three 213 ms parts) sets the target
  // distance behind the live edge; a short back buffer keeps memory flat in long spaces.
  // maxLiveSyncPlaybackRate only acts when more than 1 s is buffered ahead (hls.js 1.7
  // latency-controller), which three-part holds never reach: joining at the target is
  // joinAtTarget's job below. After a stall hls.js adds liveSyncOnStallIncrease (1 s, its
  // default) to the target: one stall buys a second of safety, then it plays on.
  // Loads are tried six times on errors and on timeouts, so a listener rides out a server
  // restart or a space moving between nodes; the times are hls.js 1.7's defaults.
  const patient = (firstByteMs, loadMs) => ({
    default: {
      maxTimeToFirstByteMs: firstByteMs,
      maxLoadTimeMs: loadMs,
      timeoutRetry: { maxNumRetry: 6, retryDelayMs: 0, maxRetryDelayMs: 0 },
      errorRetry: { maxNumRetry: 6, retryDelayMs: 1000, maxRetryDelayMs: 8000 },
    },
  });
  const HLS_CONFIG = {
    lowLatencyMode: true,
    maxLiveSyncPlaybackRate: 1.1,
    backBufferLength: 30,
    liveDurationInfinity: true,
    manifestLoadPolicy: patient(Infinity, 20000),
    playlistLoadPolicy: patient(10000, 20000),
    fragLoadPolicy: patient(10000, 120000),
  };
  // hls.js starts at the target as it was when the first playlist arrived, from the start of
  // the part holding that point, and the edge moves on while the first parts load: measured
  // here it began 0.2-0.8 s behind its own target and stayed there (ear latency ~1.45 s
  // instead of ~0.9 s). One jump forward inside the buffer during the first seconds of
  // playback fixes that; later it never jumps, so a listener's talk is never cut.
  const JOIN_SLACK_S = 0.1;
  // hls.js updates its latency figure on timeupdate; the first ones after the start are off.
  const JOIN_SETTLE_S = 0.3;
  // Playback can still wait once in its first seconds (a part late on a loaded machine; the
  // 1-4 s wait at the end of a space's first segment is gone with the vendored hls.js fix,
  // see the Makefile): a wait inside this window re-arms the jump. hls.js counts such a
  // stall too and raises its own target, which the jump then respects.
  const JOIN_WINDOW_S = 5;
  let joined = false;
  let playingFrom = null;

  function joinAtTarget() {
    if (joined || playingFrom === null || !hls || lastStatus !== "live") return;
    const played = player.currentTime - playingFrom;
    if (played > JOIN_WINDOW_S) joined = true;
    if (joined || played < JOIN_SETTLE_S || !hls.latency || hls.targetLatency === null) return;
    const to = hls.liveSyncPosition;
    const b = player.buffered;
    const late = hls.latency - hls.targetLatency > JOIN_SLACK_S;
    if (late && to !== null && b.length && b.start(b.length - 1) <= to && to < b.end(b.length - 1)) {
      player.currentTime = to;
      joined = true;
    }
  }
  player.addEventListener("playing", () => {
    if (playingFrom === null) playingFrom = player.currentTime;
  });
  player.addEventListener("waiting", () => {
    if (playingFrom !== null && player.currentTime - playingFrom < JOIN_WINDOW_S) joined = false;
  });
  player.addEventListener("timeupdate", joinAtTarget);

  function showStatus(status) {
    $("status").textContent = T["status_" + status] || status;
    $("status").className = "status " + status;
    $("waiting").hidden = status !== "scheduled";
    $("ended-notice").hidden = status !== "ended";
  }

  // With pathways (edges) configured the server names its steered playlist here: one variant
  // per edge plus an HLS Content Steering manifest (docs/scale.md, "Listener failover").
  // hls.js moves to the next pathway only once a request has used up its retries; with
  // another edge to go to, waiting is worse than moving, so retries are few and short. A
  // refused or reset connection (an edge that died) is never retried: it moves at once. A
  // hung edge costs a timeout: 3 s to the first byte is several times what a healthy edge
  // takes for a playlist answered from its cache or a part already listed (blocking reloads
  // have hls.js's own 0.8 s limit and are retried once as a plain reload), so a listener
  // hears a gap of about that long, and a slow edge at worst sends them to another edge.
  const playlist = document.body.dataset.playlist || "audio.m3u8";
  const steered = playlist !== "audio.m3u8";
  const failFast = (retries) => ({
    default: {
      maxTimeToFirstByteMs: 3000,
      maxLoadTimeMs: 8000,
      timeoutRetry: { maxNumRetry: 1, retryDelayMs: 0, maxRetryDelayMs: 0 },
      errorRetry: { maxNumRetry: retries, retryDelayMs: 500, maxRetryDelayMs: 1000 },
    },
  });
  const RESTART_MS = 1000;
  const STEERED_CONFIG = {
    ...HLS_CONFIG,
    playlistLoadPolicy: failFast(1),
    fragLoadPolicy: failFast(2),
  };

  function attach() {
    const url = base + playlist;
    // Attaching a new source runs the element's load algorithm, which pauses it without a
    // pause event: a listener who pressed Play before the space went live (attach again
    // below) would hear nothing, the player parked at its start position. Play on.
    const resume = !player.paused;
    if (hls) { hls.destroy(); hls = null; }
    joined = false;
    playingFrom = null;
    if (window.Hls && Hls.isSupported()) {
      hls = new Hls(steered ? STEERED_CONFIG : HLS_CONFIG);
      // Which edge this listener is on, for whoever looks at the page (and the tests).
      if (steered) {
        hls.on(Hls.Events.LEVEL_LOADED, (_, data) => { player.dataset.pathway = data.levelInfo.pathwayId; });
      }
      // A fatal network error stops hls.js for good: with pathways, once every one failed
      // within its penalty time (5 minutes); without, once a request used up its retries
      // (an origin restarting, a space moving between nodes). Start again a second later,
      // from where playback is: whichever server or edge answers again carries the listener.
      // A stuck page asks no more often than it already asks for the room state.
      const mine = hls;
      hls.on(Hls.Events.ERROR, (_, data) => {
        if (data.fatal && data.type === Hls.ErrorTypes.NETWORK_ERROR) {
          setTimeout(() => { if (hls === mine) mine.startLoad(); }, RESTART_MS);
        }
      });
      hls.loadSource(url);
      hls.attachMedia(player);
    } else if (player.canPlayType("application/vnd.apple.mpegurl")) {
      player.src = url; // Safari plays LL-HLS natively
    }
    if (resume) player.play().catch(() => { /* needs a click: the Play button stays */ });
  }

  async function togglePlay() {
    if (!player.paused) { player.pause(); return; }
    if (admission.busy) return;
    // When the room state says the node is full (a waiting line) or in attack mode (a proof
    // of work), the session comes first and the player starts by itself once admitted.
    // Otherwise the player starts at once and the session opens when it plays, as always.
    if (!listening.id && !listening.starting && (admissionNote.attack || admissionNote.full)) {
      admission.busy = true;
      $("play").disabled = true;
      const session = await requestSession(true);
      admission.busy = false;
      $("play").disabled = false;
      if (session) adopt(session);
    }
    if (!hls && !player.src) attach();
    try { await player.play(); } catch (e) { /* needs a click: the Play button stays */ }
  }
  function labelPlayButton() {
    $("play").textContent = !player.paused ? T.pause : lastStatus === "ended" ? T.replay : T.play;
  }
  $("play").addEventListener("click", togglePlay);
  player.addEventListener("play", labelPlayButton);
  player.addEventListener("pause", labelPlayButton);

  function renderStage(state) {
    const list = $("stage");
    list.replaceChildren();
    for (const s of state.stage) {
      const li = document.createElement("li");
      li.className = "speaker" + (s.talking ? " talking" : "");
      const name = document.createElement("bdi");
      name.textContent = s.name;
      const role = document.createElement("span");
      role.className = "role";
      role.textContent = T["role_" + s.role] || s.role;
      li.append(name, " ", role);
      if (s.talking) li.setAttribute("aria-label", `${s.name} (${T.talking})`);
      list.append(li);
    }
    $("empty-stage").hidden = state.stage.length > 0;
  }

  const when = new Intl.DateTimeFormat(document.documentElement.lang, {
    dateStyle: "full", timeStyle: "short",
  });
  function renderSchedule(state) {
    $("description").textContent = state.description || "";
    $("description").hidden = !state.description;
    const scheduled = state.status === "scheduled" && typeof state.starts_at === "number";
    $("schedule").hidden = !scheduled;
    if (scheduled) $("starts").textContent = `${T.starts} ${when.format(new Date(state.starts_at * 1000))}`;
  }

  async function poll() {
    try {
      const r = await fetch(base + "state.json", { cache: "no-cache" });
      if (r.ok) {
        const state = await r.json();
        renderStage(state);
        renderReactions(state);
        renderSchedule(state);
        admissionNote.attack = state.attack_mode === true;
        admissionNote.full = state.waiting_room === true;
        showAdmission();
        if (state.status !== lastStatus) {
          const wasNotStarted = lastStatus === "scheduled";
          lastStatus = state.status;
          showStatus(state.status);
          if (state.status === "live" && wasNotStarted && !player.paused) attach();
          labelPlayButton();
          // Nobody is on the stage of an ended space: the card would only say so.
          $("stage-card").hidden = state.status === "ended";
          $("take-part").hidden = state.status === "ended" || Boolean(token);
        }
      }
    } catch (e) { /* network hiccup: try again next second */ }
    setTimeout(poll, 1000);
  }

  // ---- audience: one anonymous listener session while playing (docs/metrics.md) ----
  // Counting takes these few requests of their own; the media URLs stay the same for
  // everyone, so caches keep sharing them. Only seconds of audio actually played count.
  const listening = {
    id: null, mode: null, played: 0, last: null, lastAt: null, timer: null, starting: false,
  };
  const listenUrl = () => `${base}sessions/${listening.id}/heartbeat`;
  function countPlayed() {
    const t = player.currentTime;
    const now = performance.now() / 1000;
    // Media time that ran faster than the clock is a seek (the join's jump to the live
    // edge, a skip), not listening: credit at most the wall time that passed.
    if (listening.last !== null && listening.lastAt !== null) {
      const step = t - listening.last;
      const wall = (now - listening.lastAt) * Math.max(player.playbackRate, 1) * 1.05;
      if (step > 0) listening.played += Math.min(step, wall);
    }
    listening.last = t;
    listening.lastAt = now;
  }
  function takePlayed() {
    countPlayed();
    const p = listening.played;
    listening.played = 0;
    return Math.round(p * 1000) / 1000;
  }
  function adopt(s) {
    listening.id = s.session;
    listening.mode = s.mode;
    listening.played = 0;
    listening.last = player.currentTime;
    listening.lastAt = performance.now() / 1000;
    listening.timer = setInterval(beat, s.heartbeat_s * 1000);
    showAdmission();
  }
  // Playing without a session: open one (quietly: whatever the server answers, playback
  // that has started is never stopped by the line or a challenge).
  async function startListening() {
    if (listening.id || listening.starting || admission.busy) return;
    listening.starting = true;
    const session = await requestSession(false);
    if (session && !listening.id) adopt(session);
    listening.starting = false;
  }
  // ---- admission: the waiting line and attack mode's proof of work (docs/security.md) ----
  // Only the session request is gated; the media URLs stay the same for everyone.
  const admission = { busy: false, ticket: null };
  const admissionNote = { attack: false, full: false, text: "" };
  const note = document.createElement("p");
  note.id = "admission";
  note.setAttribute("role", "status");
  note.setAttribute("aria-live", "polite");
  note.hidden = true;
  $("play").before(note);
  const number = new Intl.NumberFormat(document.documentElement.lang);
  const MAX_POW_TRIES = 3;

  function showAdmission() {
    // Attack mode matters to someone about to press Play, not to someone listening.
    const text = admissionNote.text || (admissionNote.attack && !listening.id ? T.attack_mode : "");
    note.textContent = text;
    note.hidden = !text;
  }
  function showWaiting(w) {
    let text = `${T.queue_full} ${T.queue_position.replace("{position}", number.format(w.position))}`;
    if (typeof w.estimate_s === "number") {
      const minutes = Math.round(w.estimate_s / 60);
      text += " " + (minutes < 1 ? T.queue_soon : T.queue_estimate.replace("{minutes}", number.format(minutes)));
    }
    admissionNote.text = text;
    showAdmission();
  }
  function loadPow() {
    if (window.MajlisPow) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "/static/pow.js";
      script.onload = resolve;
      script.onerror = reject;
      document.head.append(script);
    });
  }
  const pause = (s) => new Promise((resolve) => setTimeout(resolve, s * 1000));

  // A session for this page: waits in line and solves challenges as the server asks.
  // Returns the session (with its mode), or null when the server refused for another reason.
  async function requestSession(visible) {
    const mode = lastStatus === "ended" ? "replay" : "live";
    let proof = null;
    let tries = 0;
    try {
      for (;;) {
        if (!visible && player.paused) return null;
        const body = { mode };
        if (admission.ticket) body.ticket = admission.ticket;
        if (proof) body.pow = proof;
        proof = null;
        const r = await fetch(base + "sessions", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
        });
        const answer = await r.json().catch(() => ({}));
        if (r.status === 201) {
          admission.ticket = null;
          return { ...answer, mode };
        }
        if (r.status === 202 && answer.waiting) {
          admission.ticket = answer.ticket;
          if (visible) showWaiting(answer);
          await pause(answer.retry_after || 1);
        } else if (r.status === 401 && answer.challenge && tries++ < MAX_POW_TRIES) {
          if (visible) { admissionNote.text = T.checking; showAdmission(); }
          await loadPow();
          const solved = await MajlisPow.solve(answer.challenge, answer.difficulty);
          window.__majlisPow = { ...solved, difficulty: answer.difficulty }; // the last solve, for diagnostics
          proof = { challenge: answer.challenge, nonce: solved.nonce };
        } else if (r.status === 403 && admission.ticket) {
          admission.ticket = null; // the ticket is no good (another address?): line up again
        } else {
          return null;
        }
      }
    } catch (e) {
      return null; // not counted this time; playback is unaffected
    } finally {
      admissionNote.text = "";
      showAdmission();
    }
  }

  async function beat() {
    if (!listening.id) return;
    const body = JSON.stringify({ mode: listening.mode, played_s: takePlayed() });
    try {
      const r = await fetch(listenUrl(), {
        method: "POST", headers: { "Content-Type": "application/json" }, body,
      });
      if (r.status === 404) { // expired (a long-throttled tab): start afresh
        stopListening(false);
        if (!player.paused) startListening();
      }
    } catch (e) { /* the next beat carries on */ }
  }
  function stopListening(send) {
    if (listening.timer) clearInterval(listening.timer);
    if (listening.id && send) {
      const body = JSON.stringify({ mode: listening.mode, played_s: takePlayed(), ended: true });
      // sendBeacon survives the page going away; it posts text/plain, which the server takes.
      if (!navigator.sendBeacon(listenUrl(), body)) fetch(listenUrl(), { method: "POST", body, keepalive: true });
    }
    listening.id = null;
    listening.timer = null;
  }
  player.addEventListener("playing", startListening);
  player.addEventListener("timeupdate", () => { if (listening.id || listening.starting) countPlayed(); });
  player.addEventListener("pause", () => stopListening(true));
  window.addEventListener("pagehide", () => stopListening(true));

  // ---- taking part as a listener: reactions and a raised hand (docs/api.md, the stage) ----
  // One anonymous listener token per space and tab, asked for only when the listener acts.
  const REACTIONS = ["👏", "❤️", "😂", "🔥", "💯", "🙏", "👍", "😮"];
  const tokenKey = `majlis-listener-${spaceId}`;
  const part = { token: sessionStorage.getItem(tokenKey), handUp: false, timer: null };
  const handStatus = (text) => { $("hand-status").textContent = text; };

  async function detailOf(r) {
    const err = await r.json().catch(() => ({ detail: r.statusText }));
    return `${T.error} ${err.detail}`;
  }
  async function asListener(path, method, body) {
    if (!part.token) {
      const r = await fetch(`/api/spaces/${spaceId}/listeners/join`, { method: "POST" });
      if (!r.ok) throw new Error(await detailOf(r));
      part.token = (await r.json()).listener_token;
      sessionStorage.setItem(tokenKey, part.token);
    }
    const headers = { Authorization: `Bearer ${part.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(`/api/spaces/${spaceId}/${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  for (const emoji of REACTIONS) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "reaction";
    b.textContent = emoji;
    b.setAttribute("aria-label", `${T.react} ${emoji}`);
    b.addEventListener("click", async () => {
      try {
        const r = await asListener("reactions", "POST", { emoji });
        if (!r.ok) handStatus(await detailOf(r));
      } catch (e) { handStatus(e.message); }
    });
    $("reaction-buttons").append(b);
  }
  function renderReactions(state) {
    const total = (state.reactions && state.reactions.total) || {};
    const shown = REACTIONS.filter((e) => total[e]).map((e) => `${e} ${total[e]}`);
    $("reaction-counts").textContent = shown.length ? `${T.reactions_total} ${shown.join("  ")}` : "";
  }

  function showHand(up, ahead) {
    part.handUp = up;
    $("hand").textContent = up ? T.lower_hand : T.raise_hand;
    $("hand").setAttribute("aria-pressed", String(up));
    handStatus(up ? `${T.hand_raised} ${ahead ?? 0}` : "");
    if (up && !part.timer) part.timer = setInterval(watchInvitation, 2000);
    if (!up && part.timer) { clearInterval(part.timer); part.timer = null; }
  }
  async function toggleHand() {
    $("hand").disabled = true;
    try {
      const r = part.handUp
        ? await asListener("hand", "DELETE")
        : await asListener("hand", "POST", { name: $("your-name").value.trim() });
      if (r.ok) showHand(!part.handUp, r.status === 201 ? (await r.json()).position : 0);
      else handStatus(await detailOf(r));
    } catch (e) { handStatus(e.message); }
    $("hand").disabled = false;
  }
  // The hand's place in line and an invitation, asked every 2 s while the hand is up (a
  // raised hand is rare: these few requests never reach the listeners' shared URLs).
  async function watchInvitation() {
    try {
      const r = await asListener("listeners/me", "GET");
      if (!r.ok) return;
      const me = await r.json();
      if (me.invitation) {
        $("invitation").hidden = false;
        $("accept-invite").focus();
      } else if (me.hands_ahead !== null) {
        handStatus(`${T.hand_raised} ${me.hands_ahead}`);
      } else if (me.status !== "invited") {
        showHand(false);
      }
    } catch (e) { /* try again at the next tick */ }
  }
  async function answerInvitation(accept) {
    const r = await asListener(`invitation/${accept ? "accept" : "decline"}`, "POST",
      accept ? { consent: true } : undefined);
    $("invitation").hidden = true;
    showHand(false);
    if (!r.ok) { handStatus(await detailOf(r)); return; }
    if (!accept) return;
    // On stage: the speaker card takes over with the token bound to this listener.
    token = (await r.json()).speaker_token;
    $("take-part").hidden = true;
    showSpeaker();
  }
  $("hand").addEventListener("click", toggleHand);
  $("accept-invite").addEventListener("click", () => answerInvitation(true));
  $("decline-invite").addEventListener("click", () => answerInvitation(false));

  // ---- speaker ----
  let pc = null, stream = null, sessionUrl = null, meterTimer = null;
  const speakerStatus = (text) => { $("speaker-status").textContent = text; };

  function claimsRole() {
    try {
      const json = atob(token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/"));
      return JSON.parse(json).r;
    } catch (e) { return null; }
  }

  async function join() {
    $("join").disabled = true;
    speakerStatus(T.connecting);
    try {
      const raw = params.get("raw") === "1";
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: !raw, noiseSuppression: !raw, autoGainControl: !raw },
      });
    } catch (e) {
      speakerStatus(T.mic_denied);
      $("join").disabled = false;
      return;
    }
    startMeter(stream);
    if (await publish()) {
      $("join").hidden = true;
      $("leave").hidden = false;
    } else {
      stopLocal();
      $("join").disabled = false;
    }
  }

  // One WHIP session for the microphone already open; false (with the reason shown) if the
  // server refused it. A 503 (the space is moving to another server) is retried.
  async function publish() {
    for (;;) {
      const peer = new RTCPeerConnection({ iceServers: [] });
      peer.addTransceiver(stream.getAudioTracks()[0], { direction: "sendonly" });
      await peer.setLocalDescription(await peer.createOffer());
      await iceGathered(peer);
      const name = params.get("name") || "";
      let r;
      try {
        r = await fetch(`/whip/${spaceId}?name=${encodeURIComponent(name)}`, {
          method: "POST",
          headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
          body: peer.localDescription.sdp,
        });
      } catch (e) {
        r = null;  // the server did not answer at all
      }
      if (r && r.status === 201) {
        pc = peer;
        sessionUrl = r.headers.get("Location");
        await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
        pc.addEventListener("connectionstatechange", () => onConnection(peer));
        watchSession(peer, sessionUrl);
        return true;
      }
      peer.close();
      if (r && r.status !== 503) {
        const err = await r.json().catch(() => ({ detail: r.statusText }));
        speakerStatus(`${T.error} ${err.detail}`);
        return false;
      }
      speakerStatus(T.reconnecting);
      await pause(Number(r && r.headers.get("Retry-After")) || 1);
      if (!stream) return false;  // left meanwhile
    }
  }

  // The server that carried this session stopped answering (it may have been replaced by
  // another node, which then runs the space): publish again with the same microphone.
  // "disconnected" can heal by itself, so it gets a few seconds first.
  let healTimer = null;
  function onConnection(peer) {
    if (peer !== pc) return;
    const state = peer.connectionState;
    if (state === "connected") {
      clearTimeout(healTimer);
      speakerStatus(T.you_are_live);
    } else if (state === "disconnected" || state === "failed") {
      speakerStatus(T.reconnecting);
      clearTimeout(healTimer);
      healTimer = setTimeout(() => republish(peer), state === "failed" ? 0 : 1500);
    }
  }
  // The server's word is faster than ICE's: when the node that ran this session dies and
  // another takes the space over, the session is unknown there (404) within a few seconds,
  // while the browser's own checks take most of ten to call the path dead.
  const SESSION_CHECK_MS = 2000;
  function watchSession(peer, url) {
    const check = async () => {
      if (peer !== pc || !stream) return;
      let gone = false;
      try {
        const r = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
        gone = r.status === 404;
      } catch (e) { /* no answer: the next check, or ICE, decides */ }
      if (peer !== pc || !stream) return;
      if (gone) {
        speakerStatus(T.reconnecting);
        clearTimeout(healTimer);
        republish(peer, true);
      } else {
        setTimeout(check, SESSION_CHECK_MS);
      }
    };
    setTimeout(check, SESSION_CHECK_MS);
  }
  async function republish(peer, gone = false) {
    if (peer !== pc || !stream || (!gone && peer.connectionState === "connected")) return;
    pc = null;
    sessionUrl = null;
    peer.close();
    if (!(await publish()) && stream) {
      stopLocal();
      $("leave").hidden = true;
      $("join").hidden = false;
      $("join").disabled = false;
    }
  }

  function iceGathered(peer) {
    if (peer.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (peer.iceGatheringState === "complete") resolve(); };
      peer.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 2000); // WHIP without trickle: send what we have after 2 s
    });
  }

  function startMeter(s) {
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    ctx.createMediaStreamSource(s).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    meterTimer = setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      $("mic-level").value = Math.min(1, Math.sqrt(sum / buf.length) * 4);
    }, 100);
  }

  function stopLocal() {
    clearTimeout(healTimer);
    if (meterTimer) clearInterval(meterTimer);
    if (stream) stream.getTracks().forEach((t) => t.stop());
    if (pc) pc.close();
    pc = null; stream = null;
  }

  async function leave() {
    if (sessionUrl) {
      await fetch(sessionUrl, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
      sessionUrl = null;
    }
    stopLocal();
    speakerStatus("");
    $("leave").hidden = true;
    $("join").hidden = false;
    $("join").disabled = false;
  }

  async function endSpace() {
    if (!confirm(T.end_confirm)) return;
    const r = await fetch(`/api/spaces/${spaceId}/end`, {
      method: "POST", headers: { Authorization: `Bearer ${token}` },
    });
    if (!r.ok) {
      const err = await r.json().catch(() => ({ detail: r.statusText }));
      speakerStatus(`${T.error} ${err.detail}`);
    } else {
      await leave();
    }
  }

  // ---- host console: the hand queue and the stage, over the control WebSocket ----
  // The token travels as a subprotocol (a browser cannot set headers on a WebSocket), never
  // in the URL. Every button is a request the server authorizes again.
  const consoleStatus = (text) => { $("console-status").textContent = text; };
  // Everyone with a token on stage holds one control socket: the host and co-hosts for the
  // console, every speaker for their own microphone (a mute a host locked stays).
  function openControl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/api/spaces/${spaceId}/control`;
    const ws = new WebSocket(url, ["majlis.control", `bearer.${token}`]);
    let n = 0;
    const send = (type, fields) => ws.send(JSON.stringify({ type, id: `c${++n}`, ...fields }));
    ws.addEventListener("open", () => consoleStatus(""));
    ws.addEventListener("message", (e) => {
      const m = JSON.parse(e.data);
      if (m.type === "state") {
        const hosting = m.you.role === "host" || m.you.role === "cohost";
        $("console").hidden = !hosting;
        if (hosting) renderConsole(m, send);
        renderSelf(m.you, send);
      } else if (m.type === "error") {
        consoleStatus(`${T.error} ${m.detail}`);
        speakerStatus(`${T.error} ${m.detail}`);
      }
    });
    ws.addEventListener("close", (e) => {
      // 44xx: the server refused this token (revoked, removed): asking again cannot help.
      if (lastStatus === "ended" || (e.code >= 4400 && e.code < 4500)) return;
      consoleStatus(T.console_closed);
      setTimeout(openControl, 3000);
    });
  }
  function renderSelf(you, send) {
    const button = $("self-mute");
    button.hidden = you.muted === null || you.muted === undefined;
    button.textContent = you.muted ? T.unmute : T.mute;
    button.setAttribute("aria-pressed", String(Boolean(you.muted)));
    button.disabled = Boolean(you.muted && you.locked);
    button.onclick = () => send(you.muted ? "unmute" : "mute", {});
    $("locked-note").hidden = !(you.muted && you.locked);
  }
  function personItem(name, extra) {
    const li = document.createElement("li");
    const who = document.createElement("bdi");
    who.textContent = name;
    li.append(who, ...(extra ? [" ", extra] : []));
    return li;
  }
  function actionButton(label, name, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.setAttribute("aria-label", `${label}: ${name}`);
    b.addEventListener("click", onClick);
    return b;
  }
  function renderConsole(view, send) {
    const queue = $("queue");
    queue.replaceChildren();
    for (const h of view.queue || []) {
      const li = personItem(h.name);
      li.append(actionButton(T.invite, h.name, () => send("invite", { target: h.id })));
      queue.append(li);
    }
    $("no-hands").hidden = (view.queue || []).length > 0;
    const list = $("console-stage");
    list.replaceChildren();
    const iAmHost = view.you.role === "host";
    for (const s of view.stage) {
      const role = document.createElement("span");
      role.className = "role";
      role.textContent = (T["role_" + s.role] || s.role) + (s.muted ? ` · ${T.muted}` : "");
      const li = personItem(s.name, role);
      const target = { target: s.id };
      if (s.role !== "host" && s.id !== view.you.id && (iAmHost || s.role !== "cohost")) {
        li.append(
          s.muted
            ? actionButton(T.unmute, s.name, () => send("unmute", target))
            : actionButton(T.mute, s.name, () => send("mute", { ...target, lock: true })),
          actionButton(T.move_to_audience, s.name, () => send("move_to_audience", target)),
          actionButton(T.remove_block, s.name, () => {
            if (confirm(T.remove_confirm)) send("block", target);
          }),
        );
        if (iAmHost && s.role === "speaker") {
          li.append(actionButton(T.promote, s.name, () => send("promote", target)));
        }
        if (iAmHost && s.role === "cohost") {
          li.append(actionButton(T.demote, s.name, () => send("demote", target)));
        }
      }
      list.append(li);
    }
  }

  function showSpeaker() {
    const role = claimsRole();
    $("speaker").hidden = false;
    $("speaker-h").textContent = T["role_" + role] || "";
    $("join").addEventListener("click", join);
    $("leave").addEventListener("click", leave);
    if (role === "host") {
      $("end").hidden = false;
      $("end").addEventListener("click", endSpace);
    }
    openControl();
  }
  if (token) showSpeaker();
  // Keep the token in the fragment when switching language.
  $("lang-switch").href += location.hash;
  window.addEventListener("pagehide", () => { if (sessionUrl) leave(); });
  poll();
})();
