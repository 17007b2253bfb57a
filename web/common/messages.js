// Every UI string of the four pages, Chinese first. Keys are grouped by page;
// `{name}` placeholders are filled by t(key, args).

import { zh } from '/common/messages-zh.js';
import { en } from '/common/messages-en.js';

export const messages = { 'zh-CN': zh, en };
