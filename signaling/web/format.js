/* GiftCall web client: how times read on the page. */

/** "14:05" today, "Dec 3 14:05" another day; '' for a bad date. */
export function fmtWhen(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return sameDay ? time : `${date.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

/** "in 5 min", "2 h ago"… relative to now. */
export function fmtRelative(iso) {
  const diff = (new Date(iso).getTime() - Date.now()) / 1000;
  if (!Number.isFinite(diff)) return '';
  const abs = Math.abs(diff);
  const text = abs < 60 ? `${Math.round(abs)} s` : abs < 3600 ? `${Math.round(abs / 60)} min`
    : abs < 86400 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86400)} d`;
  return diff >= 0 ? `in ${text}` : `${text} ago`;
}

/** Seconds as "m:ss", rounded up, never negative. */
export function fmtClock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}
