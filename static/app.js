// The demo page: log in, browse titles with each viewer's progress, play one
// resumed where that viewer stopped, and stream ticks while it plays. Episodes
// are shelved by series and season, continue watching offers a series' next
// episode as "Up next", and any title can be marked watched or unwatched.

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
  moviesSection: byId('movies'),
  catalogList: byId('catalog-list'),
  seriesShelves: byId('series-shelves'),
  cardTemplate: byId('card-template'),
  seriesTemplate: byId('series-template'),
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
  ui.seriesShelves.replaceChildren();
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

/** Episodes carry their series; other titles stand alone. */
const isEpisode = (movie) => typeof movie.series_id === 'string';

/** "S1E2". */
const episodeCode = (movie) => `S${movie.season}E${movie.episode}`;

/** What the player's heading shows: "Night Shift S1E2 · Midnight". */
function displayTitle(movie) {
  return isEpisode(movie) ? `${movie.series_title} ${episodeCode(movie)} · ${movie.title}` : movie.title;
}

/** What a screen reader says of a title: "Night Shift, season 1, episode 2: Midnight". */
function spokenTitle(movie) {
  return isEpisode(movie)
    ? `${movie.series_title}, season ${movie.season}, episode ${movie.episode}: ${movie.title}`
    : movie.title;
}

/**
 * Movies in catalog order, and the series in order of their first episode,
 * each as `{ id, title, seasons: [{ season, episodes }] }` sorted by number.
 */
function shelve(movies) {
  const standalone = [];
  const series = new Map();
  for (const movie of movies) {
    if (!isEpisode(movie)) {
      standalone.push(movie);
      continue;
    }
    if (!series.has(movie.series_id)) {
      series.set(movie.series_id, { id: movie.series_id, title: movie.series_title, seasons: new Map() });
    }
    const { seasons } = series.get(movie.series_id);
    if (!seasons.has(movie.season)) seasons.set(movie.season, []);
    seasons.get(movie.season).push(movie);
  }
  const shows = [...series.values()].map((show) => ({
    ...show,
    seasons: [...show.seasons]
      .sort(([a], [b]) => a - b)
      .map(([season, episodes]) => ({
        season,
        episodes: episodes.sort((a, b) => a.episode - b.episode),
      })),
  }));
  return { standalone, shows };
}

async function refreshLibrary() {
  const mine = ++libraryVersion;
  ui.library.setAttribute('aria-busy', 'true');
  try {
    const [{ movies }, { items }] = await Promise.all([api.catalog(), api.continueWatching()]);
    const states = new Map(
      await Promise.all(
        movies.filter(isPlayable).map(async (movie) => [movie.movie_id, await viewerState(movie)]),
      ),
    );
    // An older load (perhaps another viewer's) must not paint over this one.
    if (mine !== libraryVersion) return;
    const titles = new Map(movies.map((movie) => [movie.movie_id, movie]));
    const continuing = items.filter((item) => titles.has(item.movie_id));
    ui.continueList.replaceChildren(
      ...continuing.map((item) =>
        renderCard(titles.get(item.movie_id), {
          testId: 'continue-item',
          kind: item.kind ?? 'in_progress',
          position: item.position_seconds,
          watched: states.get(item.movie_id)?.watched ?? false,
        }),
      ),
    );
    ui.continueSection.hidden = continuing.length === 0;

    const catalogCard = (movie, headingLevel) =>
      renderCard(movie, {
        testId: 'catalog-item',
        headingLevel,
        ...(states.get(movie.movie_id) ?? { position: 0, watched: false }),
        watchedToggle: true,
      });
    const { standalone, shows } = shelve(movies);
    ui.catalogList.replaceChildren(...standalone.map((movie) => catalogCard(movie, 3)));
    ui.moviesSection.hidden = standalone.length === 0;
    ui.seriesShelves.replaceChildren(...shows.map((show, i) => renderSeries(show, `series-${i}`, catalogCard)));
    ui.libraryError.textContent = '';
  } catch (error) {
    if (mine === libraryVersion) handleApiError(error, ui.libraryError);
  } finally {
    if (mine === libraryVersion) ui.library.setAttribute('aria-busy', 'false');
  }
}

/**
 * Where Play would start a title (`position`) and whether the viewer finished
 * it (`watched`). The position comes from the read path Play itself uses
 * (continue watching keeps one row per series, so it does not cover every
 * episode). Watched is a state of its own, which rewatching keeps; it is asked
 * for only when the read path shows something saved, because asking about a
 * title never played gets a 404, which the browser logs as an error. A watched
 * title rewatched and left at 0 is therefore shown unwatched.
 */
async function viewerState(movie) {
  const read = await api.stream(movie.movie_id);
  const position = read.resume_position_seconds;
  if (position === 0 && !read.completed) return { position, watched: false };
  const saved = await api.progress(movie.movie_id);
  return { position, watched: saved?.watched ?? read.completed };
}

/** A series' section: its title, then each season's episodes. `idPrefix` names its headings. */
function renderSeries(show, idPrefix, catalogCard) {
  const section = ui.seriesTemplate.content.firstElementChild.cloneNode(true);
  section.dataset.seriesId = show.id;
  const heading = section.querySelector('.series-title');
  heading.id = idPrefix;
  heading.textContent = show.title;
  section.setAttribute('aria-labelledby', heading.id);
  for (const { season, episodes } of show.seasons) {
    const seasonHeading = document.createElement('h3');
    seasonHeading.className = 'season-title';
    seasonHeading.id = `${idPrefix}-season-${season}`;
    seasonHeading.textContent = `Season ${season}`;
    const list = document.createElement('ul');
    list.className = 'cards';
    list.dataset.testid = 'season';
    list.dataset.season = String(season);
    list.setAttribute('aria-labelledby', seasonHeading.id);
    list.append(...episodes.map((movie) => catalogCard(movie, 4)));
    section.append(seasonHeading, list);
  }
  return section;
}

/**
 * One title's card. `kind` is a continue-watching row's (`in_progress` or
 * `up_next`); `headingLevel` fits the card under its section's headings;
 * `watchedToggle` adds the button that marks the title watched or unwatched.
 */
function renderCard(movie, { testId, kind, headingLevel = 3, position, watched, watchedToggle = false }) {
  const card = ui.cardTemplate.content.firstElementChild.cloneNode(true);
  card.dataset.testid = testId;
  card.dataset.movieId = movie.movie_id;
  if (kind) card.dataset.kind = kind;
  if (headingLevel !== 3) {
    const heading = document.createElement(`h${headingLevel}`);
    const template = card.querySelector('.card-title');
    heading.className = template.className;
    heading.dataset.testid = template.dataset.testid;
    template.replaceWith(heading);
  }
  card.querySelector('.card-title').textContent = movie.title;

  // Above the title: "Up next" for a series' next episode, and where an
  // episode belongs (on its series' shelf, the shelf already names the series).
  const eyebrow = card.querySelector('.card-eyebrow');
  if (kind !== 'up_next') card.querySelector('.card-badge').remove();
  const episode = card.querySelector('.card-episode');
  if (isEpisode(movie)) {
    episode.textContent = testId === 'catalog-item'
      ? episodeCode(movie)
      : `${movie.series_title} · ${episodeCode(movie)}`;
  } else {
    episode.remove();
  }
  if (!eyebrow.children.length) eyebrow.remove();

  const progress = card.querySelector('.card-progress');
  progress.setAttribute('aria-label', `${spokenTitle(movie)}: progress`);
  const button = card.querySelector('.card-play');
  const toggle = card.querySelector('.card-watched');

  if (!isPlayable(movie)) {
    card.classList.add('unplayable');
    progress.hidden = true;
    toggle.remove();
    card.querySelector('.card-meta').textContent =
      `${formatTime(movie.duration_seconds)} · streams from a CDN, not playable in this demo`;
    button.textContent = 'Not playable here';
    button.disabled = true;
    return card;
  }
  if (watchedToggle) {
    toggle.addEventListener('click', () => setWatched(movie, card.dataset.watched !== 'true', toggle));
  } else {
    toggle.remove();
  }
  showProgress(card, movie, position, watched);
  button.addEventListener('click', () => play(movie));
  return card;
}

/**
 * Draws a card's progress: where Play starts, and whether the title was
 * watched. A watched title being watched again is both.
 */
function showProgress(card, movie, position, watched) {
  const duration = movie.duration_seconds;
  const meta = card.querySelector('.card-meta');
  const button = card.querySelector('.card-play');
  card.dataset.watched = String(watched);
  card.querySelector('.card-progress').value =
    position > 0 ? Math.min(1, position / duration) : watched ? 1 : 0;
  const length = position > 0 ? `${formatTime(position)} of ${formatTime(duration)}` : formatTime(duration);
  meta.textContent = watched ? `${length} · Watched` : length;
  if (position > 0) {
    button.textContent = `Resume from ${formatTime(position)}`;
  } else {
    button.textContent = watched ? 'Play again' : 'Play';
  }
  button.setAttribute('aria-label', `${button.textContent}: ${spokenTitle(movie)}`);
  const toggle = card.querySelector('.card-watched');
  if (toggle) {
    toggle.textContent = watched ? 'Mark unwatched' : 'Mark watched';
    toggle.setAttribute('aria-label', `${toggle.textContent}: ${spokenTitle(movie)}`);
  }
}

/** Moves the playing title's bars as the server confirms saves (a save leaves watched as it was). */
function showSaved(movie, position) {
  for (const card of document.querySelectorAll(`.card[data-movie-id="${CSS.escape(movie.movie_id)}"]`)) {
    showProgress(card, movie, position, card.dataset.watched === 'true');
  }
}

/** Marks a title watched or unwatched, then redraws the library to show it. */
async function setWatched(movie, watched, toggle) {
  const hadFocus = document.activeElement === toggle;
  toggle.disabled = true;
  try {
    await (watched ? api.markWatched(movie.movie_id) : api.markUnwatched(movie.movie_id));
  } catch (error) {
    toggle.disabled = false;
    handleApiError(error, ui.libraryError);
    return;
  }
  await refreshLibrary();
  // The card was drawn anew: keep a keyboard user's place.
  if (hadFocus) {
    document
      .querySelector(`[data-testid=catalog-item][data-movie-id="${CSS.escape(movie.movie_id)}"] .card-watched`)
      ?.focus();
  }
}

// ---- player ----------------------------------------------------------------

async function play(movie) {
  stopPlayback();
  const mine = ++generation;
  ui.player.hidden = false;
  ui.playerTitle.textContent = displayTitle(movie);
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
