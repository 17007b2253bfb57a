// zh-CN first, English on request. Elements carry `data-i18n="key"` (text),
// `data-i18n-placeholder`, `data-i18n-aria-label`, `data-i18n-title`, and optional
// `data-i18n-args='{"n":3}'` for `{n}` placeholders; applyI18n() fills them in.

import { messages } from '/common/messages.js';

const STORAGE_KEY = 'vw.lang';
export const LANGS = ['zh-CN', 'en'];

const state = {
  lang: 'zh-CN',
  listeners: new Set(),
};

export function lang() {
  return state.lang;
}

/** Translate `key`, filling `{name}` placeholders from `args`. */
export function t(key, args = null) {
  const table = messages[state.lang] || {};
  let text = table[key];
  if (text === undefined) text = messages['zh-CN'][key];
  if (text === undefined) return key;
  if (args) {
    text = text.replace(/\{(\w+)\}/g, (m, name) => (args[name] !== undefined ? String(args[name]) : m));
  }
  return text;
}

export function has(key) {
  return messages['zh-CN'][key] !== undefined;
}

/** Set an element's text from a key and remember it so a language switch re-renders it. */
export function setText(el, key, args = null) {
  if (!el) return;
  el.dataset.i18n = key;
  if (args) el.dataset.i18nArgs = JSON.stringify(args);
  else delete el.dataset.i18nArgs;
  el.textContent = t(key, args);
}

/** Same for an attribute, e.g. setAttr(button, 'aria-label', 'rating.star', {n: 3}). */
export function setAttr(el, attr, key, args = null) {
  if (!el) return;
  el.setAttribute(`data-i18n-${attr}`, key);
  if (args) el.dataset.i18nArgs = JSON.stringify(args);
  el.setAttribute(attr, t(key, args));
}

function argsOf(el) {
  if (!el.dataset.i18nArgs) return null;
  try {
    return JSON.parse(el.dataset.i18nArgs);
  } catch {
    return null;
  }
}

export function applyI18n(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) {
    el.textContent = t(el.dataset.i18n, argsOf(el));
  }
  for (const attr of ['placeholder', 'aria-label', 'title']) {
    for (const el of root.querySelectorAll(`[data-i18n-${attr}]`)) {
      el.setAttribute(attr, t(el.getAttribute(`data-i18n-${attr}`), argsOf(el)));
    }
  }
}

export function onLangChange(fn) {
  state.listeners.add(fn);
  return () => state.listeners.delete(fn);
}

export function setLang(next) {
  state.lang = LANGS.includes(next) ? next : 'zh-CN';
  try {
    localStorage.setItem(STORAGE_KEY, state.lang);
  } catch {
    // storage may be disabled; the choice then lasts for this page only
  }
  document.documentElement.lang = state.lang;
  applyI18n();
  updateToggle();
  for (const fn of state.listeners) fn(state.lang);
}

function updateToggle() {
  const btn = document.getElementById('lang-toggle');
  if (!btn) return;
  // The button names the language it switches to, in that language.
  const toEnglish = state.lang === 'zh-CN';
  btn.textContent = toEnglish ? 'English' : '中文';
  btn.lang = toEnglish ? 'en' : 'zh-CN';
  btn.setAttribute('aria-label', toEnglish ? 'Switch to English / 切换到英文' : '切换到中文 / Switch to Chinese');
}

/** Read the remembered language, translate the page, wire `#lang-toggle`. */
export function initI18n() {
  let saved = null;
  try {
    saved = localStorage.getItem(STORAGE_KEY);
  } catch {
    saved = null;
  }
  const btn = document.getElementById('lang-toggle');
  if (btn) btn.addEventListener('click', () => setLang(state.lang === 'zh-CN' ? 'en' : 'zh-CN'));
  setLang(saved || 'zh-CN');
}
