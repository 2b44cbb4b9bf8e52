/* GiftCall web client: DOM helpers shared by every page. */

/** The first element matching `sel` (in `root`). */
export const $ = (sel, root = document) => root.querySelector(sel);

/** Every element matching `sel` (in `root`), as an array. */
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/**
 * A new element: `el('li', {class: 'x', dataset: {id: 1}, onclick: f}, 'text', child)`.
 * Attributes that are undefined, null or false are left out; `on…` ones are listeners.
 * @param {string} tag
 * @param {Object<string, any>} [attrs]
 * @param {...(Node|string|number|null|undefined|false|Array)} children
 * @returns {HTMLElement}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A round badge with the user's initial, in a colour derived from the user id. */
export function avatar(userId, extraClass = '') {
  const node = el('span', { class: `avatar ${extraClass}`.trim() });
  paintAvatar(node, userId);
  return node;
}

/** Paint an existing avatar node for `userId`. */
export function paintAvatar(node, userId) {
  let hash = 0;
  for (const ch of String(userId)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  node.textContent = String(userId || '?').slice(0, 1).toUpperCase();
  node.style.setProperty('--hue', String(hash % 360));
}

/**
 * A passing notice in #toasts, with an optional action button.
 * @param {string} text
 * @param {'info'|'error'} [kind]
 * @param {{label: string, run: () => void}|null} [action]
 */
export function toast(text, kind = 'info', action = null) {
  const node = el('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    el('span', {}, text));
  if (action) {
    node.append(el('button', {
      type: 'button', class: 'small',
      onclick: () => { node.remove(); action.run(); },
    }, action.label));
  }
  node.append(el('button', { type: 'button', class: 'ghost small', 'aria-label': 'dismiss', onclick: () => node.remove() }, '×'));
  $('#toasts').append(node);
  setTimeout(() => node.remove(), action ? 20000 : 6000);
}

/** Remove every notice (the call page has the screen to itself). */
export function clearToasts() {
  $('#toasts').replaceChildren();
}
