// Renders /api/openapi.json for people: no framework, no CDN (the CSP allows
// only this origin), text nodes only.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
  }
  return node;
}

function resolve(spec, schema) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return [name, spec.components.schemas[name]];
  }
  return [null, schema || {}];
}

function typeOf(spec, schema) {
  const [name, s] = resolve(spec, schema);
  if (name) return name;
  if (s.anyOf) return s.anyOf.map((x) => typeOf(spec, x)).join(" | ");
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.enum) return s.enum.map((x) => JSON.stringify(x)).join(" | ");
  if (s.type === "array") return typeOf(spec, s.items) + "[]";
  const limits = [];
  for (const key of ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "format"]) {
    if (s[key] !== undefined) limits.push(key + " " + s[key]);
  }
  return (s.type || "any") + (limits.length ? " (" + limits.join(", ") + ")" : "");
}

function describe(spec, schema, depth) {
  const [, s] = resolve(spec, schema);
  const target = s.anyOf ? s.anyOf.map((x) => resolve(spec, x)[1]).find((x) => x.properties) : s;
  if (!target || !target.properties || depth > 4) return null;
  const required = new Set(target.required || []);
  const list = el("ul", { class: "schema" });
  for (const [key, prop] of Object.entries(target.properties)) {
    list.append(el("li", {},
      el("code", {}, key + (required.has(key) ? "" : "?")), ": ",
      el("span", { class: "type" }, typeOf(spec, prop)),
      prop.description ? el("span", { class: "note" }, " — " + prop.description) : null,
      describe(spec, prop.items || prop, depth + 1)));
  }
  return list;
}

function operation(spec, path, method, op) {
  const body = el("div", {});
  const security = (op.security || []).map((s) => Object.keys(s).join(" ") || "none").join(" or ");
  body.append(el("p", { class: "note" }, "Auth: " + (security || "none")));
  if (op.parameters) {
    const table = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "")));
    for (const p of op.parameters) {
      table.append(el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in), el("td", {}, typeOf(spec, p.schema)), el("td", {}, p.description || "")));
    }
    body.append(table);
  }
  if (op.requestBody) {
    const schema = Object.values(op.requestBody.content)[0].schema;
    body.append(el("h4", {}, "Body: ", el("span", { class: "type" }, typeOf(spec, schema))), describe(spec, schema, 0));
  }
  body.append(el("h4", {}, "Responses"));
  for (const [status, response] of Object.entries(op.responses)) {
    const [type, media] = Object.entries(response.content || {})[0] || [];
    body.append(el("div", {},
      el("strong", {}, status), " " + response.description + " ",
      media ? el("span", { class: "type" }, typeOf(spec, media.schema) === "any" ? type : typeOf(spec, media.schema)) : null,
      status < "400" && media ? describe(spec, media.schema, 0) : null));
  }
  return el("details", { id: op.operationId },
    el("summary", {}, el("span", { class: "method " + method }, method.toUpperCase()), " ",
      el("span", { class: "path" }, path), " — " + (op.summary || "")),
    body);
}

async function render() {
  const main = document.getElementById("api");
  const spec = await (await fetch("/api/openapi.json")).json();
  const byTag = new Map();
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const tag = (op.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(spec, path, method, op));
    }
  }
  main.replaceChildren(el("p", {}, spec.info.description));
  for (const [tag, ops] of byTag) main.append(el("h2", {}, tag), ...ops);
  // /api/docs#post_api_calls opens that operation (ids are the operationIds).
  const target = location.hash && document.getElementById(location.hash.slice(1));
  if (target) {
    target.open = true;
    target.scrollIntoView();
  }
}

render().catch((err) => {
  document.getElementById("api").replaceChildren(el("p", {}, "Could not load the description: " + err));
});
