/* Growable buffers and a minimal JSON reader, enough for the launcher's requests. */
#include "launcher.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *xmalloc (size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) { fputs("meshfarm launcher: out of memory\n", stderr); exit(1); }
  return p;
}

void buf_put (Buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    char *p = realloc(b->s, b->cap);
    if (!p) { fputs("meshfarm launcher: out of memory\n", stderr); exit(1); }
    b->s = p;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = 0;
}

void buf_str (Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

void buf_json_string (Buf *b, const char *s) {
  buf_put(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    if (*p == '"' || *p == '\\') { esc[0] = '\\'; esc[1] = (char)*p; buf_put(b, esc, 2); }
    else if (*p < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", *p); buf_put(b, esc, 6); }
    else buf_put(b, (const char *)p, 1);
  }
  buf_put(b, "\"", 1);
}

static const char *jp;

static void skip_ws (void) { while (*jp == ' ' || *jp == '\t' || *jp == '\r' || *jp == '\n') jp++; }

static JVal *jnew (JType t) { JVal *v = xmalloc(sizeof *v); memset(v, 0, sizeof *v); v->type = t; return v; }

void jfree (JVal *v) {
  if (!v) return;
  for (int i = 0; i < v->n; i++) { jfree(v->items[i]); if (v->keys) free(v->keys[i]); }
  free(v->items); free(v->keys); free(v->str); free(v);
}

static void put_utf8 (Buf *b, unsigned cp) {
  char c[4];
  if (cp < 0x80) { c[0] = (char)cp; buf_put(b, c, 1); }
  else if (cp < 0x800) { c[0] = (char)(0xC0 | (cp >> 6)); c[1] = (char)(0x80 | (cp & 63)); buf_put(b, c, 2); }
  else if (cp < 0x10000) { c[0] = (char)(0xE0 | (cp >> 12)); c[1] = (char)(0x80 | ((cp >> 6) & 63)); c[2] = (char)(0x80 | (cp & 63)); buf_put(b, c, 3); }
  else { c[0] = (char)(0xF0 | (cp >> 18)); c[1] = (char)(0x80 | ((cp >> 12) & 63)); c[2] = (char)(0x80 | ((cp >> 6) & 63)); c[3] = (char)(0x80 | (cp & 63)); buf_put(b, c, 4); }
}

static int hex4 (const char *s, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

static char *parse_string_raw (void) {
  if (*jp != '"') return NULL;
  jp++;
  Buf b = {0};
  buf_put(&b, "", 0);
  while (*jp && *jp != '"') {
    if (*jp != '\\') { buf_put(&b, jp, 1); jp++; continue; }
    jp++;
    char c = *jp++;
    switch (c) {
      case '"': buf_put(&b, "\"", 1); break;
      case '\\': buf_put(&b, "\\", 1); break;
      case '/': buf_put(&b, "/", 1); break;
      case 'b': buf_put(&b, "\b", 1); break;
      case 'f': buf_put(&b, "\f", 1); break;
      case 'n': buf_put(&b, "\n", 1); break;
      case 'r': buf_put(&b, "\r", 1); break;
      case 't': buf_put(&b, "\t", 1); break;
      case 'u': {
        unsigned cp;
        if (!hex4(jp, &cp)) { free(b.s); return NULL; }
        jp += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && jp[0] == '\\' && jp[1] == 'u') {
          unsigned lo;
          if (hex4(jp + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) { cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00); jp += 6; }
        }
        /* A NUL would cut the string short in C: refuse it rather than run something else. */
        if (cp == 0) { free(b.s); return NULL; }
        put_utf8(&b, cp);
        break;
      }
      default: free(b.s); return NULL;
    }
  }
  if (*jp != '"') { free(b.s); return NULL; }
  jp++;
  return b.s;
}

static JVal *parse_value (int depth);

static JVal *parse_container (int depth, int object) {
  JVal *v = jnew(object ? J_OBJ : J_ARR);
  int cap = 0;
  jp++;
  skip_ws();
  if (*jp == (object ? '}' : ']')) { jp++; return v; }
  for (;;) {
    char *key = NULL;
    skip_ws();
    if (object) {
      key = parse_string_raw();
      if (!key) { jfree(v); return NULL; }
      skip_ws();
      if (*jp != ':') { free(key); jfree(v); return NULL; }
      jp++;
    }
    JVal *item = parse_value(depth + 1);
    if (!item) { free(key); jfree(v); return NULL; }
    if (v->n == cap) {
      cap = cap ? cap * 2 : 8;
      v->items = realloc(v->items, sizeof(JVal *) * (size_t)cap);
      if (object) v->keys = realloc(v->keys, sizeof(char *) * (size_t)cap);
      if (!v->items || (object && !v->keys)) { fputs("meshfarm launcher: out of memory\n", stderr); exit(1); }
    }
    v->items[v->n] = item;
    if (object) v->keys[v->n] = key;
    v->n++;
    skip_ws();
    if (*jp == ',') { jp++; continue; }
    if (*jp == (object ? '}' : ']')) { jp++; return v; }
    jfree(v);
    return NULL;
  }
}

static JVal *parse_value (int depth) {
  if (depth > 32) return NULL;
  skip_ws();
  if (*jp == '{' || *jp == '[') return parse_container(depth, *jp == '{');
  if (*jp == '"') { char *s = parse_string_raw(); if (!s) return NULL; JVal *v = jnew(J_STR); v->str = s; return v; }
  if (!strncmp(jp, "true", 4)) { jp += 4; JVal *v = jnew(J_BOOL); v->boolean = 1; return v; }
  if (!strncmp(jp, "false", 5)) { jp += 5; return jnew(J_BOOL); }
  if (!strncmp(jp, "null", 4)) { jp += 4; return jnew(J_NULL); }
  char *end;
  double d = strtod(jp, &end);
  if (end == jp) return NULL;
  jp = end;
  JVal *v = jnew(J_NUM);
  v->num = d;
  return v;
}

JVal *json_parse (const char *text) {
  jp = text;
  return parse_value(0);
}

JVal *jget (JVal *obj, const char *key) {
  if (!obj || obj->type != J_OBJ) return NULL;
  for (int i = 0; i < obj->n; i++) if (!strcmp(obj->keys[i], key)) return obj->items[i];
  return NULL;
}

const char *jstr (JVal *obj, const char *key) { JVal *v = jget(obj, key); return v && v->type == J_STR ? v->str : NULL; }
