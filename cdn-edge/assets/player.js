// Watch page player. Plays the edge's HLS playlist with hls.js where the browser has Media Source
// Extensions, with the browser's own HLS otherwise (Safari on older iPhones), and shows whether the
// broadcast is live or has ended by polling the playlist for #EXT-X-ENDLIST. Every problem a viewer can
// meet is said in words on the page, not only in the console.
//
// `window.watch` exposes the state for the browser test (e2e/tests/watch_page.rs).
(function () {
  'use strict';

  var POLL_MS = 2000;
  var RETRY_MS = 2000;

  var root = document.getElementById('watch');
  var video = document.getElementById('video');
  var badge = document.getElementById('state');
  var message = document.getElementById('message');
  var unmute = document.getElementById('unmute');
  var src = root.getAttribute('data-playlist');
  // The low-latency rendition (LL-HLS), used with hls.js when the edge has it for this stream.
  var llSrc = root.getAttribute('data-ll-playlist');

  var watch = (window.watch = {
    state: 'connecting', // connecting | live | ended | offline | unreachable | error
    engine: null, // 'hls.js' | 'native'
    lowLatency: false, // hls.js plays the LL-HLS playlist
    errors: [], // every hls.js error event: {type, details, fatal, reason}
    hls: null,
  });

  var LABELS = {
    connecting: 'Connecting…',
    live: 'Live',
    ended: 'Ended',
    offline: 'Offline',
    unreachable: 'No connection',
    error: 'Error',
  };

  function setState(state) {
    watch.state = state;
    badge.textContent = LABELS[state];
    badge.className = 'badge ' + state;
  }

  // kind: info | warn | error; an empty text hides the line.
  var messageKind = '';
  function say(text, kind) {
    messageKind = text ? kind || 'info' : '';
    message.textContent = text || '';
    message.className = 'message ' + messageKind;
    message.hidden = !text;
  }

  function fatal(text) {
    setState('error');
    say(text, 'error');
  }

  var playing = false; // a player is attached to the video element

  function startPlayer() {
    if (playing) return;
    if (window.Hls && window.Hls.isSupported()) {
      startHls();
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      startNative();
    } else if (!window.Hls) {
      fatal(
        'The video player (hls.js) is missing from this server, and this browser cannot play live ' +
          'video by itself. Try Safari, or ask the operator to rebuild the edge with the player.'
      );
      return;
    } else {
      fatal(
        'This browser cannot play live video (no Media Source Extensions and no built-in HLS). ' +
          'Try a current Chrome, Firefox, Edge or Safari.'
      );
      return;
    }
    playing = true;
  }

  function stopPlayer() {
    starts++; // a start still waiting for its playlist check is void
    if (watch.hls) {
      watch.hls.destroy();
      watch.hls = null;
    }
    if (watch.engine === 'native') {
      video.removeAttribute('src');
      video.load();
    }
    playing = false;
  }

  function autoplay() {
    var p = video.play();
    if (p && p.catch) {
      p.catch(function () {
        say('Press play to start watching.', 'info');
      });
    }
  }

  var starts = 0;
  function startHls() {
    watch.engine = 'hls.js';
    var mine = ++starts;
    // An origin may run without the low-latency rendition: then the edge has no ll.m3u8.
    var check = llSrc
      ? fetch(llSrc, { cache: 'no-store' }).then(
          function (r) {
            return r.ok;
          },
          function () {
            return false;
          }
        )
      : Promise.resolve(false);
    check.then(function (ll) {
      if (mine === starts && playing) createHls(ll ? llSrc : src, ll);
    });
  }

  function createHls(url, lowLatency) {
    var Hls = window.Hls;
    watch.lowLatency = lowLatency;
    var hls = new Hls({ liveDurationInfinity: true, backBufferLength: 30, lowLatencyMode: lowLatency });
    watch.hls = hls;
    hls.on(Hls.Events.ERROR, function (_event, data) {
      watch.errors.push({
        type: data.type,
        details: data.details,
        fatal: !!data.fatal,
        reason: data.reason || (data.error && data.error.message) || '',
      });
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        // The playlist poll tells apart a stream that stopped (404) from a lost connection; here we
        // only keep trying.
        say('Lost the connection to the stream. Reconnecting…', 'warn');
        setTimeout(function () {
          if (watch.hls === hls) hls.startLoad();
        }, RETRY_MS);
      } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        say('The video could not be decoded. Trying to recover…', 'warn');
        hls.recoverMediaError();
      } else {
        stopPlayer();
        fatal('Playback stopped because of an error (' + data.details + '). Reload the page to try again.');
      }
    });
    var started = false;
    hls.on(Hls.Events.FRAG_BUFFERED, function () {
      if (messageKind === 'warn') say('');
      if (started) return;
      started = true;
      // Start once there is something to play, and exactly where it begins: the first video frame of
      // a stream with B-frames is shown a few frames after 0, and playing from 0 would stall on that
      // gap before hls.js jumps it.
      var b = video.buffered;
      if (b.length && video.currentTime < b.start(0)) video.currentTime = b.start(0);
      autoplay();
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  }

  function startNative() {
    watch.engine = 'native';
    video.src = src;
    autoplay();
  }

  video.addEventListener('error', function () {
    if (watch.engine !== 'native' || !video.error) return;
    var words = {
      1: 'Playback was stopped.',
      2: 'Lost the connection to the stream.',
      3: 'The video could not be decoded.',
      4: 'This browser cannot play this stream.',
    };
    say((words[video.error.code] || 'Playback failed.') + ' Reload the page to try again.', 'error');
  });
  video.addEventListener('waiting', function () {
    if (!messageKind && watch.state === 'live') say('Buffering…', 'info');
  });
  video.addEventListener('playing', function () {
    if (messageKind === 'info') say('');
  });
  video.addEventListener('ended', function () {
    if (watch.state === 'ended') say('The broadcast has ended. Thanks for watching.', 'info');
  });
  // Offered only while there is a picture: browsers autoplay only muted video.
  ['volumechange', 'playing', 'emptied'].forEach(function (e) {
    video.addEventListener(e, showUnmute);
  });
  function showUnmute() {
    unmute.hidden = !video.muted || video.readyState < 2;
  }
  unmute.addEventListener('click', function () {
    video.muted = false;
    video.play();
  });
  showUnmute();

  // Live/ended/offline from the playlist itself, every POLL_MS.
  function onPlaylist(status, text) {
    if (status === 404) {
      if (watch.state !== 'offline') {
        stopPlayer();
        setState('offline');
        say('This stream is not live right now. The page will start playing when it is.', 'info');
      }
      return;
    }
    if (status !== 200) {
      setState('unreachable');
      say('The server answered with an error (HTTP ' + status + '). Retrying…', 'warn');
      return;
    }
    var ended = text.indexOf('#EXT-X-ENDLIST') !== -1;
    if (ended) {
      if (watch.state !== 'ended') {
        setState('ended');
        // The segments still listed play to the end; the message comes with the video's own end.
        if (!playing) say('The broadcast has ended.', 'info');
      }
      if (!playing) startPlayer();
      return;
    }
    // Live. After an end or an outage, a new broadcast under the same name needs a fresh player:
    // hls.js stops reloading a playlist once it has seen #EXT-X-ENDLIST.
    var previous = watch.state;
    if (previous === 'error') return;
    setState('live');
    if (previous !== 'live' && previous !== 'connecting') say('');
    if (previous === 'ended' || previous === 'offline') stopPlayer();
    startPlayer();
  }

  function poll() {
    fetch(src, { cache: 'no-store' })
      .then(function (r) {
        return r.text().then(function (text) {
          onPlaylist(r.status, text);
        });
      })
      .catch(function () {
        if (watch.state !== 'error') {
          setState('unreachable');
          say('Cannot reach the server. Check your connection; retrying…', 'warn');
        }
      })
      .then(function () {
        setTimeout(poll, POLL_MS);
      });
  }

  setState('connecting');
  poll();
})();
