/* GiftCall web client: failures worth a line in the console, not a word to the user. */

/** @param {string} where what failed @param {any} err */
export function logError(where, err) {
  console.warn(`[giftcall] ${where}:`, err); // eslint-disable-line no-console
}
