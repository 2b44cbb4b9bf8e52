/* GiftCall web client: what the call page shows (#call-view), drawn from a
 * CallSession's state (call.js): the phase, the status line or banner, the
 * countdown, the timer, the question and why the call ended.
 *
 * For tests and automation the state is mirrored into data-* attributes of
 * #call-view (docs/web-client.md lists them); the session writes its own
 * (phase, role, partner, counters) through the helpers here.
 */

import { $ } from './dom.js';
import { fmtClock } from './format.js';

const PHASE_LABEL = {
  idle: 'idle', media: 'camera', joining: 'joining', waiting: 'waiting', connecting: 'connecting',
  reconnecting: 'reconnecting', countdown: 'starting', live: 'live', ended: 'ended', error: 'not joined',
};
const END_TEXT = {
  time_limit: 'Time is up: the call reached its limit.',
  left: 'The call was hung up.',
  cancelled: 'The call was cancelled.',
  missed: 'The call was missed: you did not both join in time.',
  replaced: 'You joined this call from another window, which took over.',
  server: 'The server ended the call.',
};

/** The call view's element; its dataset mirrors the session's state. */
export function callView() {
  return $('#call-view');
}

/** A blank call page for `callId`, every counter at 0. */
export function resetCallView(callId, counterNames) {
  const v = callView();
  v.dataset.callId = String(callId);
  v.dataset.phase = 'idle';
  v.dataset.phaseLog = '';
  v.dataset.pcState = 'new';
  v.dataset.iceState = 'new';
  v.dataset.partner = 'absent';
  v.dataset.role = '';
  v.dataset.endReason = '';
  v.dataset.question = '';
  for (const key of counterNames) v.dataset[key] = '0';
  $('#call-partner').textContent = '…';
  $('#remote-video').srcObject = null;
  $('#local-video').srcObject = null;
  $('#countdown').hidden = true;
  $('#question').hidden = true;
  $('#ended-panel').hidden = true;
  $('#call-error').textContent = '';
  $('#call-timer').textContent = '--:--';
  $('#call-timer').dataset.remaining = '';
  $('#call-progress > div').style.width = '100%';
  $('#toggle-mic').setAttribute('aria-pressed', 'false');
  $('#toggle-cam').setAttribute('aria-pressed', 'false');
}

export function showPhaseLabel(phase) {
  const label = $('#call-phase-label');
  label.textContent = PHASE_LABEL[phase] || phase;
  label.className = `pill phase-${phase}`;
}

export function showPartner(partnerId) {
  $('#call-partner').textContent = partnerId;
  $('#remote-label').textContent = partnerId;
}

/** The icebreaker question of the live call (hidden when none). */
export function showQuestion(text) {
  if (text) {
    $('#question-text').textContent = text;
    callView().dataset.question = text;
  }
  $('#question').hidden = !text;
}

/** The ended panel, with the reason in words. */
export function showEnded(reason, message) {
  callView().dataset.endReason = reason || 'unknown';
  $('#ended-reason').textContent = END_TEXT[reason] || message || `The call is ${reason || 'over'}.`;
  $('#ended-panel').hidden = false;
  $('#question').hidden = true;
}

/** A line under the video: an error, or a node with a "Try again" button. */
export function showCallError(...content) {
  $('#call-error').replaceChildren(...content);
}

export function showLocalVideo(stream) {
  $('#local-video').srcObject = stream;
}

export function remoteVideo() {
  return $('#remote-video');
}

function statusText(call) {
  const partner = call.partnerId || 'your partner';
  switch (call.phase) {
    case 'media': return 'Starting your camera…';
    case 'joining': return 'Joining the call…';
    case 'waiting': return `${call.note ? `${call.note} ` : ''}Waiting for your partner…`;
    case 'reconnecting': return call.note || 'Reconnecting…';
    case 'connecting': return `Connecting to ${partner}…`;
    case 'countdown': return `Connected to ${partner}.`;
    case 'live': return call.note || `Reconnecting to ${partner}…`;
    case 'error': return call.note || 'Could not join the call.';
    default: return '';
  }
}

/** The stage: partner's video or the placeholder with the status, and the note. */
export function renderStage(call) {
  const connected = Boolean(call.pc && call.pc.connectionState === 'connected' && remoteVideo().srcObject);
  const showPlaceholder = call.phase !== 'ended' && !connected;
  $('#remote-placeholder').hidden = !showPlaceholder;
  // Over live video a note is a banner, not a curtain.
  $('#call-banner').textContent = call.note;
  $('#call-banner').hidden = showPlaceholder || !call.note || call.phase === 'ended';
  $('#remote-label').hidden = !connected || call.phase === 'ended';
  $('#remote-placeholder').classList.toggle('busy', !['error', 'ended'].includes(call.phase));
  $('#call-status').textContent = statusText(call);
  callView().dataset.status = $('#call-status').textContent;
}

/** The clocks: the countdown before live, then the timer and its bar to the end. */
export function renderClocks(call) {
  const now = Date.now();
  const countdown = $('#countdown');
  if (call.phase === 'countdown' && call.liveAt) {
    const left = Math.max(0, Math.ceil((call.liveAt - now) / 1000));
    countdown.hidden = false;
    $('#countdown-number').textContent = String(left);
    callView().dataset.countdown = String(left);
  } else {
    countdown.hidden = true;
  }
  const timer = $('#call-timer');
  const bar = $('#call-progress > div');
  if ((call.phase === 'live' || call.phase === 'ended') && call.endsAt) {
    const left = call.phase === 'ended' ? 0
      : Math.min(call.limitS || Infinity, Math.max(0, (call.endsAt - now) / 1000));
    timer.textContent = fmtClock(left);
    timer.dataset.remaining = String(Math.ceil(left));
    const total = call.limitS || 60;
    bar.style.width = `${Math.max(0, Math.min(100, (left / total) * 100))}%`;
    timer.classList.toggle('low', left <= 10 && call.phase === 'live');
    timer.classList.remove('idle');
  } else if (call.limitS) {
    // Not started: the length of the call, greyed.
    timer.textContent = fmtClock(call.limitS);
    timer.dataset.remaining = '';
    bar.style.width = '100%';
    timer.classList.remove('low');
    timer.classList.add('idle');
  }
}
