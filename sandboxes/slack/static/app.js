/* The Slack sandbox's page: draws the workspace as one person sees it and sends what they
 * do to /sandbox/act, which forwards it to the app exactly as Slack would.
 *
 * Everything shown comes from the app or the person, so the DOM is built with
 * createElement and textContent only: no markup is ever parsed from data, and links
 * and image sources are limited to http(s) (plus mailto for links).
 *
 * The page polls /sandbox/state every ~700 ms with the version it last drew and redraws
 * only the parts whose data changed, so typing in a modal survives a new message.
 */
"use strict";

const POLL_MS = 700;
const SUGGEST_DELAY_MS = 250;

const page = {
  user: null, // whom the page acts as
  channel: null, // a channel id, or HOME
  version: null, // the state version drawn
  data: null, // the last snapshot
  expanded: new Set(), // threads shown open: "channel:ts"
  drawn: { users: "", sidebar: "", pane: "", modal: "" },
  modalErrors: {},
  homeOpened: null, // "user" for whom app_home_opened was sent since Home was chosen
  paneChannel: null, // the conversation the pane shows, to keep its scroll position
  offline: false, // the last poll failed
};
const HOME = "app-home";
let pollTimer = null;
let polling = false;
let pollAgain = false;
let nextId = 0;

// --- small helpers -------------------------------------------------------------------------

function $(id) {
  return document.getElementById(id);
}

/** An element with attributes, listeners (on*) and children; text only via textContent. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function uniqueId(prefix = "f") {
  nextId += 1;
  return `${prefix}${nextId}`;
}

function plain(textObject) {
  if (!textObject) return "";
  return typeof textObject === "string" ? textObject : String(textObject.text || "");
}

/** Slack escapes only these three in message text. */
function decode(text) {
  return String(text).replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

/** An absolute http(s) URL (or mailto for links), else null: never javascript: or data:. */
function safeUrl(url, image = false) {
  const scheme = image ? /^https?:\/\//i : /^(https?:\/\/|mailto:)/i;
  if (!url || !scheme.test(String(url))) return null;
  try {
    return new URL(String(url)).href;
  } catch {
    return null;
  }
}

function fileUrl(fileId) {
  return `/sandbox/files/${encodeURIComponent(fileId)}`;
}

/** The sandbox's url_private (".../files-pri/T-F.../name") is served at /sandbox/files. */
function imageSource(image) {
  const file = image.slack_file || {};
  if (file.id) return fileUrl(file.id);
  const url = file.url || image.image_url || image.url;
  const sandboxFile = /\/files-pri\/[^/]*-(F[A-Z0-9]+)\//.exec(String(url || ""));
  return sandboxFile ? fileUrl(sandboxFile[1]) : safeUrl(url, true);
}

function clock(ts) {
  const date = new Date(Number(String(ts).split(".")[0]) * 1000);
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function userById(id) {
  return (page.data?.users || []).find((user) => user.id === id);
}

function userName(id) {
  return userById(id)?.name || id || "someone";
}

function channelById(id) {
  return (page.data?.channels || []).find((channel) => channel.id === id);
}

function notice(text, isError = false) {
  const node = $("notice");
  node.textContent = text || "";
  node.classList.toggle("error", Boolean(text) && isError);
}

// --- mrkdwn --------------------------------------------------------------------------------

// `code`, <link|label>, *bold*, _italic_, ~strike~ (markers only at word edges, as Slack)
const INLINE = new RegExp(
  [
    "(`[^`\\n]+`)",
    "(<[^<>\\n]+>)",
    "(?<![\\p{L}\\p{N}*])\\*(?=\\S)([^*\\n]*?\\S)\\*(?![\\p{L}\\p{N}])",
    "(?<![\\p{L}\\p{N}_])_(?=\\S)([^_\\n]*?\\S)_(?![\\p{L}\\p{N}])",
    "(?<![\\p{L}\\p{N}~])~(?=\\S)([^~\\n]*?\\S)~(?![\\p{L}\\p{N}])",
  ].join("|"),
  "u",
);

/** Slack's mrkdwn as DOM: ```pre```, > quotes, inline styles, links and mentions. */
function mrkdwn(text) {
  const fragment = document.createDocumentFragment();
  const parts = String(text ?? "").split("```");
  if (parts.length % 2 === 0) {
    const unclosed = parts.pop(); // a fence never closed is plain text, as in Slack
    parts[parts.length - 1] += `\`\`\`${unclosed}`;
  }
  parts.forEach((part, index) => {
    if (index % 2 === 0) fragment.append(mrkdwnLines(part));
    else fragment.append(el("pre", { class: "code-block", text: decode(part.replace(/^\n/, "")) }));
  });
  return fragment;
}

function mrkdwnLines(text) {
  const fragment = document.createDocumentFragment();
  let quote = null;
  text.split("\n").forEach((line, index) => {
    const quoted = /^(?:&gt;|>) ?(.*)$/.exec(line);
    if (quoted) {
      if (quote) quote.append(el("br"));
      else fragment.append((quote = el("blockquote")));
      quote.append(inline(quoted[1]));
      return;
    }
    if (quote) quote = null;
    else if (index > 0) fragment.append(el("br"));
    fragment.append(inline(line));
  });
  return fragment;
}

function inline(text) {
  const fragment = document.createDocumentFragment();
  let rest = text;
  while (rest) {
    const match = INLINE.exec(rest);
    if (!match) {
      fragment.append(decode(rest));
      break;
    }
    if (match.index) fragment.append(decode(rest.slice(0, match.index)));
    if (match[1]) fragment.append(el("code", { text: decode(match[1].slice(1, -1)) }));
    else if (match[2]) fragment.append(angle(match[2].slice(1, -1)));
    else if (match[3] !== undefined) fragment.append(el("strong", {}, inline(match[3])));
    else if (match[4] !== undefined) fragment.append(el("em", {}, inline(match[4])));
    else fragment.append(el("s", {}, inline(match[5])));
    rest = rest.slice(match.index + match[0].length);
  }
  return fragment;
}

/** <url|label>, <@U>, <#C>, <!subteam^S>, <!here>... */
function angle(inner) {
  const bar = inner.indexOf("|");
  const target = bar < 0 ? inner : inner.slice(0, bar);
  const label = bar < 0 ? "" : decode(inner.slice(bar + 1));
  if (target.startsWith("@")) {
    return el("span", { class: "mention", text: `@${label || userName(target.slice(1))}` });
  }
  if (target.startsWith("#")) {
    const channel = channelById(target.slice(1));
    return el("span", { class: "mention", text: `#${label || channel?.name || target.slice(1)}` });
  }
  if (target.startsWith("!subteam^")) {
    const id = target.slice("!subteam^".length);
    const group = (page.data?.usergroups || []).find((g) => g.id === id);
    return el("span", {
      class: "mention",
      text: `@${(label || group?.handle || id).replace(/^@/, "")}`,
    });
  }
  if (target.startsWith("!")) {
    const special = target.slice(1).split("^")[0];
    const text = ["here", "channel", "everyone"].includes(special)
      ? `@${special}`
      : label || special;
    return el("span", { class: "mention", text });
  }
  if (!/^[a-z][a-z0-9+.-]*:/i.test(target)) return document.createTextNode(`<${decode(inner)}>`);
  const href = safeUrl(decode(target));
  if (!href) return document.createTextNode(label || decode(target)); // e.g. javascript:
  return el("a", {
    href,
    target: "_blank",
    rel: "noopener noreferrer",
    text: label || decode(target),
  });
}

function textObject(object) {
  if (!object) return null;
  if (object.type === "mrkdwn") return el("span", { class: "mrkdwn" }, mrkdwn(object.text));
  return el("span", { text: plain(object) });
}

// --- Block Kit ------------------------------------------------------------------------------

/** Where elements live: what a click names (message or view) and what inputs hold. */
function surface(kind, ids = {}) {
  return { kind, ...ids, inputs: [], errorSlots: {}, errors: {} };
}

function renderBlocks(blocks, ctx) {
  return (blocks || []).map((block) => {
    const draw = BLOCKS[block.type];
    const node = draw
      ? draw(block, ctx)
      : el("div", { class: "unknown", text: `[${block.type} block]` });
    node.classList.add("block");
    return node;
  });
}

const BLOCKS = {
  header: (block) => el("h3", { class: "b-header", text: plain(block.text) }),
  divider: () => el("hr", { class: "b-divider" }),
  section: drawSection,
  context: drawContext,
  actions: (block, ctx) =>
    el(
      "div",
      { class: "b-actions" },
      (block.elements || []).map((e) => drawElement(e, block, ctx, false)),
    ),
  input: drawInput,
  image: drawImageBlock,
  rich_text: (block) => el("div", { class: "b-rich" }, (block.elements || []).map(richPart)),
  markdown: (block) => el("div", { class: "b-markdown" }, mrkdwn(block.text)),
};

function drawSection(block, ctx) {
  const body = el("div", { class: "b-section-body" });
  if (block.text) body.append(el("div", { class: "b-text" }, textObject(block.text)));
  if (block.fields) {
    body.append(
      el(
        "div",
        { class: "b-fields" },
        block.fields.map((f) => el("div", {}, textObject(f))),
      ),
    );
  }
  const node = el("div", { class: "b-section" }, body);
  if (block.accessory) {
    node.append(
      el("div", { class: "b-accessory" }, drawElement(block.accessory, block, ctx, false)),
    );
  }
  return node;
}

function drawContext(block) {
  const parts = (block.elements || []).map((part) =>
    part.type === "image"
      ? el("img", { class: "icon", src: imageSource(part), alt: part.alt_text || "" })
      : textObject(part),
  );
  return el("div", { class: "b-context" }, parts);
}

function drawImageBlock(block) {
  const src = imageSource(block);
  const figure = el("figure", { class: "b-image" });
  if (block.title) figure.append(el("figcaption", { text: plain(block.title) }));
  figure.append(
    src
      ? el("img", { src, alt: block.alt_text || "" })
      : el("div", { class: "missing", text: block.alt_text || "[image]" }),
  );
  return figure;
}

function drawInput(block, ctx) {
  const id = uniqueId();
  const optional = block.optional ? el("span", { class: "optional", text: " (optional)" }) : null;
  const label = el("label", { class: "b-label", for: id }, plain(block.label), optional);
  const element = drawElement(block.element || {}, block, ctx, true, id);
  const error = el("div", {
    class: "b-error",
    role: "alert",
    text: ctx.errors[block.block_id] || "",
  });
  ctx.errorSlots[block.block_id] = error;
  const hint = block.hint ? el("div", { class: "b-hint", text: plain(block.hint) }) : null;
  return el("div", { class: "b-input" }, label, element, hint, error);
}

// --- elements -------------------------------------------------------------------------------

function drawElement(element, block, ctx, inInput, id = uniqueId()) {
  const draw = ELEMENTS[element.type];
  if (!draw) return el("span", { class: "unknown", text: `[${element.type}]` });
  return draw(element, block, ctx, inInput, id);
}

const ELEMENTS = {
  button: drawButton,
  static_select: drawSelect,
  multi_static_select: drawSelect,
  external_select: drawExternalSelect,
  overflow: drawOverflow,
  plain_text_input: drawTextInput,
  url_text_input: drawTextInput,
  email_text_input: drawTextInput,
  number_input: drawTextInput,
  checkboxes: drawChoices,
  radio_buttons: drawChoices,
  users_select: drawPicker,
  multi_users_select: drawPicker,
  channels_select: drawPicker,
  multi_channels_select: drawPicker,
  conversations_select: drawPicker,
  multi_conversations_select: drawPicker,
  datepicker: drawDate,
  timepicker: drawDate,
  image: (element) =>
    el("img", { class: "icon", src: imageSource(element), alt: element.alt_text || "" }),
};

/** Elements outside input blocks act at once, as do inputs with dispatch_action. */
function firesAtOnce(block, inInput) {
  return !inInput || Boolean(block.dispatch_action);
}

function register(ctx, block, element, read) {
  if (element.action_id) ctx.inputs.push({ block, element, read });
}

function drawButton(element, block, ctx) {
  const onclick = async (event) => {
    const button = event.currentTarget;
    if (element.confirm && !window.confirm(confirmText(element.confirm))) return;
    const href = safeUrl(element.url);
    if (href) window.open(href, "_blank", "noopener");
    button.disabled = true;
    await sendAction(ctx, block, element, { value: element.value ?? null });
    button.disabled = false;
  };
  const style = ["btn", element.style].filter(Boolean).join(" ");
  return el("button", { type: "button", class: style, onclick }, plain(element.text));
}

function confirmText(confirm) {
  return [plain(confirm.title), plain(confirm.text)].filter(Boolean).join("\n\n");
}

function optionsOf(element) {
  if (element.option_groups) return element.option_groups.flatMap((group) => group.options || []);
  return element.options || [];
}

function appendOptions(select, element) {
  const add = (parent, options) =>
    options.forEach((o) => parent.append(el("option", { value: o.value, text: plain(o.text) })));
  if (element.option_groups) {
    element.option_groups.forEach((group) => {
      const node = el("optgroup", { label: plain(group.label) });
      add(node, group.options || []);
      select.append(node);
    });
  } else add(select, element.options || []);
}

function drawSelect(element, block, ctx, inInput, id) {
  const multiple = element.type.startsWith("multi_");
  const select = el("select", { id, class: "select", multiple });
  if (!multiple)
    select.append(
      el("option", { value: "", text: plain(element.placeholder) || "Choose an option" }),
    );
  appendOptions(select, element);
  const initial = multiple
    ? element.initial_options || []
    : [element.initial_option].filter(Boolean);
  const wanted = new Set(initial.map((o) => o.value));
  for (const option of select.options) option.selected = wanted.has(option.value);
  const picked = () => {
    const values = new Set([...select.selectedOptions].map((o) => o.value));
    return optionsOf(element).filter((o) => values.has(o.value));
  };
  register(ctx, block, element, () =>
    multiple
      ? { type: element.type, selected_options: picked() }
      : { type: element.type, selected_option: picked()[0] || null },
  );
  if (firesAtOnce(block, inInput) && !multiple) {
    select.addEventListener("change", () => {
      if (picked()[0]) sendAction(ctx, block, element, { selected_option: picked()[0] });
    });
  }
  return select;
}

function drawOverflow(element, block, ctx, inInput, id) {
  const select = el("select", { id, class: "select overflow", "aria-label": "More actions" });
  select.append(el("option", { value: "", text: "⋯" }));
  appendOptions(select, element);
  select.addEventListener("change", () => {
    const option = optionsOf(element).find((o) => o.value === select.value);
    select.value = "";
    if (option) sendAction(ctx, block, element, { selected_option: option });
  });
  return select;
}

/** A typeahead: the app's options come back through block_suggestion. */
function drawExternalSelect(element, block, ctx, inInput, id) {
  let chosen = element.initial_option || null;
  let asked = 0;
  let timer = null;
  const placeholder = plain(element.placeholder) || "Type to search";
  const input = el("input", {
    id,
    type: "search",
    class: "text",
    placeholder,
    autocomplete: "off",
  });
  input.value = chosen ? plain(chosen.text) : "";
  const list = el("ul", { class: "suggestions", role: "listbox", hidden: true });
  const minLength = element.min_query_length ?? 3;
  const pick = (option) => {
    chosen = option;
    input.value = plain(option.text);
    list.hidden = true;
    if (firesAtOnce(block, inInput)) sendAction(ctx, block, element, { selected_option: option });
  };
  input.addEventListener("input", () => {
    chosen = null;
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const query = input.value;
      if (query.length < minLength) {
        list.hidden = true;
        return;
      }
      asked += 1;
      const mine = asked;
      const body = {
        kind: "block_suggestion",
        action_id: element.action_id,
        block_id: block.block_id,
        value: query,
      };
      const answer = await act(Object.assign(body, where(ctx)));
      if (mine === asked && answer?.ok) showSuggestions(list, answer, pick);
    }, SUGGEST_DELAY_MS);
  });
  register(ctx, block, element, () => ({ type: element.type, selected_option: chosen }));
  return el("div", { class: "external" }, input, list);
}

function showSuggestions(list, answer, pick) {
  list.replaceChildren();
  const groups = answer.option_groups || [{ options: answer.options || [] }];
  for (const group of groups) {
    if (group.label) list.append(el("li", { class: "group", text: plain(group.label) }));
    for (const option of group.options || []) {
      const onkeydown = (event) => event.key === "Enter" && pick(option);
      list.append(
        el("li", {
          role: "option",
          tabindex: 0,
          text: plain(option.text),
          onclick: () => pick(option),
          onkeydown,
        }),
      );
    }
  }
  if (!list.children.length) list.append(el("li", { class: "empty", text: "No matches" }));
  list.hidden = false;
}

function drawTextInput(element, block, ctx, inInput, id) {
  const multiline = element.type === "plain_text_input" && element.multiline;
  const types = { url_text_input: "url", email_text_input: "email", number_input: "number" };
  const input = multiline
    ? el("textarea", { id, class: "text", rows: 4 })
    : el("input", { id, class: "text", type: types[element.type] || "text" });
  input.placeholder = plain(element.placeholder);
  if (element.max_length) input.maxLength = element.max_length;
  if (element.type === "number_input" && element.is_decimal_allowed) input.step = "any";
  input.value = element.initial_value ?? "";
  register(ctx, block, element, () => ({
    type: element.type,
    value: input.value === "" ? null : input.value,
  }));
  if (firesAtOnce(block, inInput) && inInput) {
    input.addEventListener("change", () => sendAction(ctx, block, element, { value: input.value }));
  }
  return input;
}

function drawChoices(element, block, ctx, inInput, id) {
  const multiple = element.type === "checkboxes";
  const name = uniqueId("choice");
  const initial = multiple
    ? element.initial_options || []
    : [element.initial_option].filter(Boolean);
  const wanted = new Set(initial.map((o) => o.value));
  const boxes = (element.options || []).map((option) => {
    const box = el("input", { type: multiple ? "checkbox" : "radio", name, value: option.value });
    box.checked = wanted.has(option.value);
    const description = option.description
      ? el("span", { class: "b-hint" }, textObject(option.description))
      : null;
    return {
      option,
      box,
      node: el("label", { class: "choice" }, box, textObject(option.text), description),
    };
  });
  const chosen = () => boxes.filter((b) => b.box.checked).map((b) => b.option);
  register(ctx, block, element, () =>
    multiple
      ? { type: element.type, selected_options: chosen() }
      : { type: element.type, selected_option: chosen()[0] || null },
  );
  if (firesAtOnce(block, inInput) && !multiple) {
    boxes.forEach(({ box, option }) =>
      box.addEventListener("change", () =>
        sendAction(ctx, block, element, { selected_option: option }),
      ),
    );
  }
  return el(
    "div",
    { id, class: "choices", role: multiple ? "group" : "radiogroup" },
    boxes.map((b) => b.node),
  );
}

/** users / channels / conversations selects, single or multi, from the snapshot. */
function drawPicker(element, block, ctx, inInput, id) {
  const multiple = element.type.startsWith("multi_");
  const kind = element.type.replace("multi_", "").replace("_select", "");
  const key = { users: "user", channels: "channel", conversations: "conversation" }[kind];
  const data = page.data || { users: [], channels: [] };
  const entries =
    kind === "users"
      ? data.users.filter((u) => !u.deleted).map((u) => [u.id, `${u.real_name} (@${u.name})`])
      : data.channels
          .filter((c) => kind === "conversations" || c.kind === "channel")
          .map((c) => [c.id, c.kind === "channel" ? `#${c.label}` : c.label]);
  const select = el("select", { id, class: "select", multiple });
  if (!multiple)
    select.append(el("option", { value: "", text: plain(element.placeholder) || "Choose…" }));
  entries.forEach(([value, text]) => select.append(el("option", { value, text })));
  const initial = multiple
    ? element[`initial_${key}s`] || []
    : [element[`initial_${key}`]].filter(Boolean);
  for (const option of select.options) option.selected = initial.includes(option.value);
  const values = () => [...select.selectedOptions].map((o) => o.value).filter(Boolean);
  register(ctx, block, element, () =>
    multiple
      ? { type: element.type, [`selected_${key}s`]: values() }
      : { type: element.type, [`selected_${key}`]: values()[0] || null },
  );
  return select;
}

function drawDate(element, block, ctx, inInput, id) {
  const isDate = element.type === "datepicker";
  const input = el("input", { id, class: "text", type: isDate ? "date" : "time" });
  input.value = (isDate ? element.initial_date : element.initial_time) || "";
  const key = isDate ? "selected_date" : "selected_time";
  register(ctx, block, element, () => ({ type: element.type, [key]: input.value || null }));
  return input;
}

// --- rich_text (messages people write) -----------------------------------------------------

function richPart(part) {
  const items = () => (part.elements || []).map(richInline);
  switch (part.type) {
    case "rich_text_section":
      return el("div", {}, items());
    case "rich_text_quote":
      return el("blockquote", {}, items());
    case "rich_text_preformatted":
      return el("pre", { class: "code-block" }, items());
    case "rich_text_list": {
      const rows = (part.elements || []).map((row) =>
        el("li", {}, (row.elements || []).map(richInline)),
      );
      return el(part.style === "ordered" ? "ol" : "ul", {}, rows);
    }
    default:
      return el("span", { class: "unknown", text: `[${part.type}]` });
  }
}

function richInline(item) {
  let node;
  if (item.type === "link") {
    const href = safeUrl(item.url);
    const text = item.text || item.url || "";
    node = href
      ? el("a", { href, target: "_blank", rel: "noopener noreferrer", text })
      : document.createTextNode(text);
  } else if (item.type === "user")
    node = el("span", { class: "mention", text: `@${userName(item.user_id)}` });
  else if (item.type === "channel") {
    node = el("span", {
      class: "mention",
      text: `#${channelById(item.channel_id)?.name || item.channel_id}`,
    });
  } else if (item.type === "usergroup") {
    const group = (page.data?.usergroups || []).find((g) => g.id === item.usergroup_id);
    node = el("span", { class: "mention", text: `@${group?.handle || item.usergroup_id}` });
  } else if (item.type === "broadcast")
    node = el("span", { class: "mention", text: `@${item.range}` });
  else if (item.type === "emoji") node = document.createTextNode(emoji(item));
  else node = document.createTextNode(item.text || "");
  const style = item.style || {};
  for (const [flag, tag] of [
    ["code", "code"],
    ["bold", "strong"],
    ["italic", "em"],
    ["strike", "s"],
  ]) {
    if (style[flag]) node = el(tag, {}, node);
  }
  return node;
}

function emoji(item) {
  try {
    if (item.unicode)
      return String.fromCodePoint(...item.unicode.split("-").map((h) => parseInt(h, 16)));
  } catch {
    // an unknown code point: fall back to the name
  }
  return `:${item.name}:`;
}

// --- messages -------------------------------------------------------------------------------

function drawMessage(message, channel, inThread) {
  const ctx = surface("message", { channel: channel.id, ts: message.ts });
  const author = message.bot_id ? message.bot_profile?.name || "app" : userName(message.user);
  const head = el(
    "div",
    { class: "msg-head" },
    el("strong", { text: author }),
    message.bot_id ? el("span", { class: "tag", text: "APP" }) : null,
    el("time", { text: clock(message.ts), title: message.ts }),
    message.edited ? el("span", { class: "edited", text: "(edited)" }) : null,
    message.is_ephemeral ? el("span", { class: "only-you", text: "Only visible to you" }) : null,
  );
  const body = message.blocks?.length
    ? el("div", { class: "blocks" }, renderBlocks(message.blocks, ctx))
    : el("div", { class: "msg-text" }, mrkdwn(message.text || ""));
  if (message.subtype === "file_share" && !message.text) body.hidden = true;
  const classes = ["msg", message.is_ephemeral ? "ephemeral" : "", inThread ? "reply" : ""];
  const node = el("article", { class: classes.join(" ").trim() }, head, body);
  node.append(
    ...(message.attachments || []).map(drawAttachment),
    ...(message.files || []).map(drawFile),
  );
  if (!inThread && message.replies?.length) node.append(drawThread(message, channel));
  return node;
}

function drawThread(message, channel) {
  const key = `${channel.id}:${message.ts}`;
  const open = page.expanded.has(key);
  const count = message.replies.length;
  const toggle = () => {
    if (open) page.expanded.delete(key);
    else page.expanded.add(key);
    render(true);
  };
  const label = open ? "Hide thread" : `${count} ${count === 1 ? "reply" : "replies"}`;
  const button = el(
    "button",
    { type: "button", class: "thread-toggle", "aria-expanded": open, onclick: toggle },
    label,
  );
  const thread = el("div", { class: "thread" }, button);
  if (open) thread.append(...message.replies.map((reply) => drawMessage(reply, channel, true)));
  return thread;
}

function drawFile(file) {
  const title = file.title || file.name || file.id;
  if (String(file.mimetype || "").startsWith("image/")) {
    return el(
      "figure",
      { class: "file" },
      el("figcaption", { text: title }),
      el("img", { src: fileUrl(file.id), alt: file.alt_txt || title }),
    );
  }
  return el("a", {
    class: "file",
    href: fileUrl(file.id),
    target: "_blank",
    rel: "noopener",
    text: `📎 ${title}`,
  });
}

function drawAttachment(attachment) {
  const ctx = surface("attachment");
  const node = el("div", { class: "attachment" });
  const colours = { good: "#2eb67d", warning: "#ecb22e", danger: "#e01e5a" };
  const colour =
    colours[attachment.color] || `#${String(attachment.color || "").replace(/^#/, "")}`;
  if (/^#[0-9a-f]{3,8}$/i.test(colour)) node.style.borderLeftColor = colour;
  if (attachment.pretext) node.append(el("div", {}, mrkdwn(attachment.pretext)));
  if (attachment.title) node.append(el("strong", { text: attachment.title }));
  if (attachment.text) node.append(el("div", {}, mrkdwn(attachment.text)));
  for (const field of attachment.fields || []) {
    node.append(
      el(
        "div",
        { class: "b-field" },
        el("strong", { text: field.title || "" }),
        el("div", {}, mrkdwn(field.value || "")),
      ),
    );
  }
  if (attachment.blocks) node.append(...renderBlocks(attachment.blocks, ctx));
  if (!node.children.length && attachment.fallback)
    node.append(el("div", { text: attachment.fallback }));
  return node;
}

// --- acting ---------------------------------------------------------------------------------

/** What a click names: the view, or the message. */
function where(ctx) {
  return ctx.viewId ? { view_id: ctx.viewId } : { channel: ctx.channel, ts: ctx.ts };
}

/** Slack's state.values: {block_id: {action_id: {type, value | selected_...}}}. */
function collect(ctx) {
  const values = {};
  for (const { block, element, read } of ctx.inputs) {
    if (!block.block_id) continue;
    values[block.block_id] = values[block.block_id] || {};
    values[block.block_id][element.action_id] = read();
  }
  return values;
}

async function sendAction(ctx, block, element, extra) {
  const body = {
    kind: "block_actions",
    action_id: element.action_id,
    block_id: block.block_id,
    ...extra,
  };
  if (ctx.kind === "attachment")
    return notice("Buttons in legacy attachments are not wired in the sandbox.", true);
  Object.assign(body, where(ctx));
  if (ctx.viewId || ctx.inputs.length) body.values = collect(ctx);
  await act(body);
}

/** POST an act; the answer gains ok and httpStatus. Errors show in the top bar. */
async function act(body) {
  notice("Sending…");
  let response;
  let answer;
  try {
    response = await fetch("/sandbox/act", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...body, user: page.user }),
    });
    answer = await response.json();
  } catch (error) {
    notice(`The sandbox did not answer: ${error}`, true);
    return null;
  }
  answer.httpStatus = response.status;
  answer.ok = response.ok && !answer.error;
  notice(answer.ok ? "" : answer.error || `HTTP ${response.status}`, !answer.ok);
  schedule(0);
  return answer;
}

// --- the modal ------------------------------------------------------------------------------

function drawModal(view, depth) {
  const dialog = $("modal");
  const ctx = surface("modal", { viewId: view.id });
  ctx.errors = page.modalErrors;
  const status = el("div", { class: "modal-status", role: "status" });
  const close = () => closeModal(view);
  const closeText = plain(view.close) || (depth > 1 ? "Back" : "Cancel");
  const form = el(
    "form",
    { class: "modal", novalidate: true },
    el(
      "header",
      { class: "modal-head" },
      depth > 1
        ? el("span", { class: "depth", text: `${depth - 1} below`, title: "a pushed view" })
        : null,
      el("h2", { text: plain(view.title) }),
      el("button", {
        type: "button",
        class: "x",
        "aria-label": "Close",
        text: "×",
        onclick: close,
      }),
    ),
    el("div", { class: "modal-body" }, renderBlocks(view.blocks, ctx)),
    el(
      "footer",
      { class: "modal-foot" },
      status,
      el("button", { type: "button", class: "btn", text: closeText, onclick: close }),
      view.submit
        ? el("button", { type: "submit", class: "btn primary", text: plain(view.submit) })
        : null,
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitModal(view, ctx, status, form);
  });
  dialog.replaceChildren(form);
  if (!dialog.open) dialog.showModal();
}

function isEmpty(value) {
  return Object.entries(value).every(
    ([key, v]) => key === "type" || v === null || v === "" || (Array.isArray(v) && !v.length),
  );
}

function showErrors(ctx, errors) {
  for (const [blockId, slot] of Object.entries(ctx.errorSlots))
    slot.textContent = errors[blockId] || "";
}

async function submitModal(view, ctx, status, form) {
  // Slack's client checks required inputs itself; the app never sees such a submission
  const missing = {};
  for (const { block, read } of ctx.inputs) {
    if (block.type === "input" && !block.optional && isEmpty(read())) {
      missing[block.block_id] = "Please complete this required field.";
    }
  }
  showErrors(ctx, missing);
  if (Object.keys(missing).length) return;
  status.textContent = "Sending…";
  form.querySelectorAll("button").forEach((b) => (b.disabled = true));
  const answer = await act({ kind: "view_submission", view_id: view.id, values: collect(ctx) });
  form.querySelectorAll("button").forEach((b) => (b.disabled = false));
  page.modalErrors = answer?.errors || {};
  showErrors(ctx, page.modalErrors);
  status.textContent =
    answer && !answer.ok ? answer.error || "The app refused the submission." : "";
}

async function closeModal(view) {
  page.modalErrors = {};
  if (view.notify_on_close) {
    const answer = await act({ kind: "view_closed", view_id: view.id });
    // 409: no app, nothing happened; the person still wants the modal gone
    if (answer?.httpStatus === 409) await act({ kind: "close_view", view_id: view.id });
  } else await act({ kind: "close_view", view_id: view.id });
}

// --- drawing the page -----------------------------------------------------------------------

function drawUsers(data) {
  const picker = $("user-picker");
  const key = JSON.stringify(data.users);
  if (page.drawn.users !== key) {
    page.drawn.users = key;
    const people = data.users.filter((u) => !u.deleted && !u.is_bot);
    picker.replaceChildren(
      ...people.map((u) =>
        el("option", {
          value: u.id,
          text: `${u.real_name} (@${u.name})${u.is_bot ? " · bot" : ""}`,
        }),
      ),
    );
  }
  picker.value = page.user;
  $("team").textContent = `${data.team.domain} · Slack sandbox`;
  const app = $("app-link");
  app.textContent = data.app_url ? `app: ${data.app_url}` : "no app connected: clicks are refused";
  app.classList.toggle("error", !data.app_url);
}

function defaultChannel(data) {
  const mine = data.channels.filter((c) => c.kind === "channel" && c.is_member);
  return (mine[0] || data.channels[0] || { id: HOME }).id;
}

function drawSidebar(data) {
  const key = JSON.stringify([
    page.channel,
    data.channels.map((c) => [c.id, c.label, c.kind, c.is_member]),
  ]);
  if (page.drawn.sidebar === key) return;
  page.drawn.sidebar = key;
  const item = (id, label, extra = "") =>
    el(
      "li",
      {},
      el(
        "button",
        {
          type: "button",
          class: `conv ${extra} ${id === page.channel ? "active" : ""}`,
          onclick: () => choose(id),
        },
        label,
      ),
    );
  const channels = data.channels.filter((c) => c.kind === "channel");
  const dms = data.channels.filter((c) => c.kind !== "channel");
  $("sidebar").replaceChildren(
    el("h2", { text: "Channels" }),
    el(
      "ul",
      {},
      channels.map((c) =>
        item(c.id, `${c.is_private ? "🔒" : "#"} ${c.label}`, c.is_member ? "" : "muted"),
      ),
    ),
    el("h2", { text: "Direct messages" }),
    el(
      "ul",
      {},
      dms.length
        ? dms.map((c) => item(c.id, c.label))
        : el("li", { class: "muted", text: "none yet" }),
    ),
    el("h2", { text: "Apps" }),
    el("ul", {}, item(HOME, "🏠 App Home")),
  );
}

function drawPane(data, force) {
  const channel = data.channels.find((c) => c.id === page.channel);
  const key = JSON.stringify([page.channel, channel, data.home, data.users, [...page.expanded]]);
  if (!force && page.drawn.pane === key) return;
  const sameChannel = page.paneChannel === page.channel;
  page.paneChannel = page.channel;
  page.drawn.pane = key;
  const body = $("pane-body");
  const nearBottom = body.scrollHeight - body.scrollTop - body.clientHeight < 60;
  const scrollTop = body.scrollTop;
  if (page.channel === HOME) {
    $("pane-title").textContent = "App Home";
    body.replaceChildren(drawHome(data));
    return;
  }
  if (!channel) {
    $("pane-title").textContent = "Nothing here";
    body.replaceChildren(el("p", { class: "muted", text: "Pick a conversation." }));
    return;
  }
  $("pane-title").textContent = channel.kind === "channel" ? `#${channel.label}` : channel.label;
  const messages = channel.messages.map((m) => drawMessage(m, channel, false));
  body.replaceChildren(
    ...(messages.length ? messages : [el("p", { class: "muted", text: "No messages yet." })]),
  );
  body.scrollTop = sameChannel && !nearBottom ? scrollTop : body.scrollHeight;
}

function drawHome(data) {
  if (!data.home) {
    const why = data.app_url
      ? "The app has not published a Home tab for you yet."
      : "No app is connected.";
    return el("p", { class: "muted", text: why });
  }
  const ctx = surface("home", { viewId: data.home.id });
  return el("div", { class: "home" }, renderBlocks(data.home.blocks, ctx));
}

function drawDialog(data) {
  const view = data.modal;
  const key = view ? `${view.id}:${view.hash}` : "";
  if (page.drawn.modal === key) return;
  page.modalErrors = {}; // a new or updated view starts without errors, as in Slack
  page.drawn.modal = key;
  const dialog = $("modal");
  if (view) drawModal(view, data.modal_depth);
  else if (dialog.open) dialog.close();
}

function render(force = false) {
  const data = page.data;
  if (!data) return;
  if (page.channel !== HOME && !data.channels.some((c) => c.id === page.channel)) {
    page.channel = defaultChannel(data);
  }
  drawUsers(data);
  drawSidebar(data);
  drawPane(data, force);
  drawDialog(data);
  openHomeOnce();
  remember();
}

/** Slack sends app_home_opened each time the person opens the tab. */
function openHomeOnce() {
  if (page.channel !== HOME || page.homeOpened === page.user || !page.data?.app_url) return;
  page.homeOpened = page.user;
  act({ kind: "app_home_opened" });
}

function choose(channelId) {
  page.channel = channelId;
  page.homeOpened = null;
  render();
}

function remember() {
  const hash = new URLSearchParams({ user: page.user || "", channel: page.channel || "" });
  history.replaceState(null, "", `#${hash}`);
}

// --- polling --------------------------------------------------------------------------------

function schedule(ms) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, ms);
}

async function poll() {
  if (polling) {
    pollAgain = true;
    return;
  }
  polling = true;
  try {
    await fetchState();
  } finally {
    polling = false;
    schedule(pollAgain ? 0 : POLL_MS);
    pollAgain = false;
  }
}

async function fetchState() {
  const params = new URLSearchParams();
  if (page.user) params.set("user", page.user);
  if (page.version !== null) params.set("since", page.version);
  const asked = page.user;
  let answer;
  let response;
  try {
    response = await fetch(`/sandbox/state?${params}`, { cache: "no-store" });
    answer = await response.json();
  } catch {
    page.offline = true;
    notice("The sandbox is not answering; trying again…", true);
    return;
  }
  if (page.offline) {
    page.offline = false;
    notice("");
  }
  if (!response.ok) {
    notice(answer.error || `HTTP ${response.status}`, true);
    page.user = null; // e.g. an unknown user in the URL: fall back to the default
    page.version = null;
    return;
  }
  if (!answer.changed || (asked && answer.user !== asked) || page.user !== asked) return;
  page.user = answer.user;
  page.version = answer.version;
  page.data = answer;
  render();
}

function start() {
  const saved = new URLSearchParams(window.location.hash.slice(1));
  page.user = saved.get("user") || null;
  page.channel = saved.get("channel") || null;
  $("user-picker").addEventListener("change", (event) => {
    page.user = event.target.value;
    page.version = null;
    page.homeOpened = null;
    page.drawn = { users: "", sidebar: "", pane: "", modal: "" };
    page.channel = null;
    schedule(0);
  });
  $("modal").addEventListener("cancel", (event) => {
    event.preventDefault(); // Esc: close as the Close button does
    if (page.data?.modal) closeModal(page.data.modal);
  });
  schedule(0);
}

start();
