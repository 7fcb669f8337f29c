// The demo page: log in, browse titles with each viewer's progress, play one
// resumed where that viewer stopped, and stream ticks while it plays.

import * as api from './api.js';
import { PlaybackSession } from './session.js';

const byId = (id) => document.getElementById(id);
const ui = {
  whoami: byId('whoami'),
  currentUser: byId('current-user'),
  switchUser: byId('switch-user'),
  login: byId('login'),
  loginName: byId('login-name'),
  loginError: byId('login-error'),
  library: byId('library'),
  libraryError: byId('library-error'),
  continueSection: byId('continue'),
  continueList: byId('continue-list'),
  catalogList: byId('catalog-list'),
  cardTemplate: byId('card-template'),
  player: byId('player'),
  playerTitle: byId('player-title'),
  playerClose: byId('player-close'),
  video: byId('video'),
  statusText: byId('status-text'),
  savedText: byId('saved-text'),
  connection: byId('connection'),
};

const TICK_INTERVAL_MS = 1000;

/** The title in the player: `{ movie, session }`, or null. */
let current = null;
/** Bumped by every play or stop, so a slower earlier start gives up. */
let generation = 0;
/** Bumped by every library load, so only the newest one is drawn. */
let libraryVersion = 0;
let ticker = 0;
let retryCountdown = 0;

// ---- time ------------------------------------------------------------------

/** 83 → "1:23", 7800 → "2:10:00". */
function formatTime(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

// ---- login -----------------------------------------------------------------

function showLogin(message = '') {
  // The next viewer must never glimpse this one's titles.
  libraryVersion += 1;
  ui.continueList.replaceChildren();
  ui.catalogList.replaceChildren();
  ui.continueSection.hidden = true;
  ui.library.setAttribute('aria-busy', 'true');
  ui.whoami.hidden = true;
  ui.library.hidden = true;
  ui.player.hidden = true;
  ui.login.hidden = false;
  ui.loginError.textContent = message;
  ui.loginName.focus();
}

function showLoggedIn(user) {
  ui.currentUser.textContent = user;
  ui.whoami.hidden = false;
  ui.login.hidden = true;
  ui.library.hidden = false;
  refreshLibrary();
}

ui.login.addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = ui.loginName.value.trim();
  if (!name) {
    ui.loginError.textContent = 'Please enter a name.';
    return;
  }
  ui.loginError.textContent = '';
  try {
    const { user } = await api.logIn(name);
    showLoggedIn(user);
  } catch (error) {
    ui.loginError.textContent = `Could not log in: ${error.message}`;
  }
});

ui.switchUser.addEventListener('click', () => {
  stopPlayback();
  api.forgetLogin();
  ui.loginName.value = '';
  showLogin();
});

/** Any call may find the demo token expired: send the viewer back to log in. */
function handleApiError(error, shownIn) {
  if (error instanceof api.ApiError && error.status === 401) {
    stopPlayback();
    api.forgetLogin();
    showLogin('Your login expired; please log in again.');
    return;
  }
  shownIn.textContent = error.message;
}

// ---- library ---------------------------------------------------------------

/** The demo can only play media this server serves; CDN URLs are examples. */
function isPlayable(movie) {
  return new URL(movie.stream_url, location.href).origin === location.origin;
}

async function refreshLibrary() {
  const mine = ++libraryVersion;
  ui.library.setAttribute('aria-busy', 'true');
  try {
    const [{ movies }, { items }] = await Promise.all([api.catalog(), api.continueWatching()]);
    const inProgress = new Map(items.map((item) => [item.movie_id, item]));
    // Continue-watching leaves finished titles out; ask the read path which of
    // the rest were finished, so they can say "Watched".
    const finished = new Set();
    await Promise.all(
      movies
        .filter((movie) => !inProgress.has(movie.movie_id) && isPlayable(movie))
        .map(async (movie) => {
          if ((await api.stream(movie.movie_id)).completed) finished.add(movie.movie_id);
        }),
    );
    // An older load (perhaps another viewer's) must not paint over this one.
    if (mine !== libraryVersion) return;
    const titles = new Map(movies.map((movie) => [movie.movie_id, movie]));
    const continuing = items.filter((item) => titles.has(item.movie_id));
    ui.continueList.replaceChildren(
      ...continuing.map((item) =>
        renderCard(titles.get(item.movie_id), item.position_seconds, false, 'continue-item'),
      ),
    );
    ui.continueSection.hidden = continuing.length === 0;
    ui.catalogList.replaceChildren(
      ...movies.map((movie) =>
        renderCard(
          movie,
          inProgress.get(movie.movie_id)?.position_seconds ?? 0,
          finished.has(movie.movie_id),
          'catalog-item',
        ),
      ),
    );
    ui.libraryError.textContent = '';
  } catch (error) {
    if (mine === libraryVersion) handleApiError(error, ui.libraryError);
  } finally {
    if (mine === libraryVersion) ui.library.setAttribute('aria-busy', 'false');
  }
}

function renderCard(movie, position, completed, testId) {
  const card = ui.cardTemplate.content.firstElementChild.cloneNode(true);
  card.dataset.testid = testId;
  card.dataset.movieId = movie.movie_id;
  card.dataset.completed = String(completed);
  card.querySelector('.card-title').textContent = movie.title;
  const progress = card.querySelector('.card-progress');
  progress.setAttribute('aria-label', `${movie.title}: progress`);
  const button = card.querySelector('.card-play');

  if (!isPlayable(movie)) {
    card.classList.add('unplayable');
    progress.hidden = true;
    card.querySelector('.card-meta').textContent =
      `${formatTime(movie.duration_seconds)} · streams from a CDN, not playable in this demo`;
    button.textContent = 'Not playable here';
    button.disabled = true;
    return card;
  }
  showProgress(card, position, movie.duration_seconds, completed);
  button.addEventListener('click', () => play(movie));
  return card;
}

function showProgress(card, position, duration, completed) {
  const meta = card.querySelector('.card-meta');
  const button = card.querySelector('.card-play');
  const title = card.querySelector('.card-title').textContent;
  card.querySelector('.card-progress').value = completed ? 1 : Math.min(1, position / duration);
  if (completed) {
    meta.textContent = `${formatTime(duration)} · Watched`;
    button.textContent = 'Play again';
  } else if (position > 0) {
    meta.textContent = `${formatTime(position)} of ${formatTime(duration)}`;
    button.textContent = `Resume from ${formatTime(position)}`;
  } else {
    meta.textContent = formatTime(duration);
    button.textContent = 'Play';
  }
  button.setAttribute('aria-label', `${button.textContent}: ${title}`);
}

/** Moves the playing title's bars as the server confirms saves. */
function showSaved(movie, position) {
  for (const card of document.querySelectorAll(`.card[data-movie-id="${CSS.escape(movie.movie_id)}"]`)) {
    showProgress(card, position, movie.duration_seconds, false);
  }
}

// ---- player ----------------------------------------------------------------

async function play(movie) {
  stopPlayback();
  const mine = ++generation;
  ui.player.hidden = false;
  ui.playerTitle.textContent = movie.title;
  setStatus('Loading…');
  ui.savedText.textContent = '';
  setConnection('');
  scrollTo({ top: 0 });

  let info;
  try {
    info = await api.stream(movie.movie_id);
  } catch (error) {
    if (mine === generation) handleApiError(error, ui.statusText);
    return;
  }
  if (mine !== generation) return;

  const { video } = ui;
  video.src = info.stream_url;
  try {
    await mediaEvent('loadedmetadata');
    if (mine !== generation) return;
    // A resume point past the end (a shorter re-encode) would just end at once.
    const resumeAt = Math.min(info.resume_position_seconds, Math.max(0, video.duration - 1));
    if (resumeAt > 0) {
      video.currentTime = resumeAt;
      await mediaEvent('seeked');
      if (mine !== generation) return;
    }
    setStatus(resumeAt > 0 ? `Resumed at ${formatTime(resumeAt)}` : 'Starting from the beginning');
  } catch (error) {
    if (mine === generation) setStatus(`This title cannot be played here: ${error.message}`);
    return;
  }

  current = { movie, session: openSession(movie) };
  video.focus();
  // Started from the viewer's click, so autoplay policy allows it; a rejection
  // only means a later pause or load won, or the browser still refused.
  video.play().catch((error) => {
    if (error.name === 'NotAllowedError') setStatus('Press play to start');
  });
}

function openSession(movie) {
  return new PlaybackSession(() => api.sessionUrl(movie.movie_id), {
    onChange: setConnection,
    onSaved: (position) => {
      ui.savedText.textContent = `Saved ${formatTime(position)}`;
      if (ui.video.ended) {
        refreshLibrary();
      } else {
        showSaved(movie, position);
      }
    },
    // The write landed but something received later holds the title: say so
    // rather than claim a save that readers will not see.
    onSuperseded: (message) => {
      ui.savedText.textContent =
        message.by === 'delete'
          ? `Not saved: ${formatTime(message.position_seconds)} was removed`
          : `Not saved: another device is at ${formatTime(message.current_position_seconds)}`;
    },
    onServerError: (message) => setStatus(`Server: ${message.message || message.code}`),
    // Every attempt first asks the HTTP API for a ticket, which says what a
    // refused upgrade cannot: an expired login is the one cause that retrying
    // cannot fix.
    onUrlError: (error) => {
      if (error instanceof api.ApiError && error.status === 401) {
        handleApiError(error, ui.statusText);
      }
    },
  });
}

/** Ends the current title's session after telling the server where it stopped. */
function stopPlayback() {
  generation += 1;
  clearInterval(ticker);
  if (!current) return;
  const { session } = current;
  current = null;
  session.tick(ui.video.currentTime, ui.video.ended ? 'ended' : 'paused');
  session.close();
  ui.video.pause();
}

function tick(state) {
  if (!current) return;
  current.session.tick(ui.video.currentTime, state ?? (ui.video.paused ? 'paused' : 'playing'));
}

ui.video.addEventListener('play', () => {
  clearInterval(ticker);
  ticker = setInterval(() => tick(), TICK_INTERVAL_MS);
});
ui.video.addEventListener('pause', () => {
  clearInterval(ticker);
  // The end fires pause then ended; let ended speak for it.
  if (!ui.video.ended) tick('paused');
});
ui.video.addEventListener('seeked', () => tick());
ui.video.addEventListener('ended', () => {
  clearInterval(ticker);
  tick('ended');
});

ui.playerClose.addEventListener('click', () => {
  stopPlayback();
  ui.video.removeAttribute('src');
  ui.video.load();
  ui.player.hidden = true;
  refreshLibrary();
});

// Leaving or backgrounding the page is where positions get lost: say where
// the viewer is now (best effort; the server also saves when the socket drops).
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'hidden') tick();
});
addEventListener('pagehide', () => {
  if (!current) return;
  clearInterval(ticker);
  tick(ui.video.ended ? 'ended' : 'paused');
  current.session.close();
});
addEventListener('pageshow', (event) => {
  // Back from the back/forward cache: the old socket is gone, start a new one.
  if (event.persisted && current) current.session = openSession(current.movie);
});

/** Resolves on the video's next `name` event; rejects if the media fails first. */
function mediaEvent(name) {
  const { video } = ui;
  return new Promise((resolve, reject) => {
    const settle = (error) => {
      video.removeEventListener(name, ok);
      video.removeEventListener('error', failed);
      if (error) reject(error);
      else resolve();
    };
    const ok = () => settle();
    const failed = () => settle(new Error(video.error?.message || 'the media could not be loaded'));
    video.addEventListener(name, ok);
    video.addEventListener('error', failed);
  });
}

// ---- status line -----------------------------------------------------------

function setStatus(text) {
  ui.statusText.textContent = text;
}

function setConnection(state, retryAt) {
  clearInterval(retryCountdown);
  ui.connection.dataset.state = state;
  const show = () => {
    ui.connection.textContent =
      state === 'reconnecting'
        ? `reconnecting in ${Math.max(0, Math.ceil((retryAt - Date.now()) / 1000))}s`
        : state === 'closed' ? '' : state;
  };
  show();
  if (state === 'reconnecting') retryCountdown = setInterval(show, 1000);
}

// ---- start -----------------------------------------------------------------

const login = api.savedLogin();
if (login) {
  showLoggedIn(login.user);
} else {
  showLogin();
}
