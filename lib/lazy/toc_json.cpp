#include "lazy/toc_json.hpp"

#include <algorithm>
#include <limits>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "unpack/tree_writer.hpp"
#include "util/error.hpp"

namespace layer::lazy {

namespace {

using json = nlohmann::json;

// A TOC is {"entries": [{..., "xattrs": {...}}]}: depth 4 at most. Anything
// deeper is refused while parsing, before it is built.
constexpr int kMaxDepth = 4;
constexpr size_t kMaxNameBytes = 255;

std::string shown(std::string_view s) {
  std::string out(s.substr(0, 120));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  return out;
}

int64_t get_int(const json& o, const char* key, const std::string& ctx) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return 0;
  if (it->is_number_unsigned()) {
    if (it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw Error(ctx + ": '" + key + "' is out of range");
    return static_cast<int64_t>(it->get<uint64_t>());
  }
  if (!it->is_number_integer()) throw Error(ctx + ": '" + key + "' is not an integer");
  int64_t v = it->get<int64_t>();
  if (v < 0) throw Error(ctx + ": '" + key + "' is negative");
  return v;
}

std::string get_string(const json& o, const char* key, const std::string& ctx) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return {};
  if (!it->is_string()) throw Error(ctx + ": '" + key + "' is not a string");
  return it->get<std::string>();
}

RawEntry read_entry(const json& o, const TocLimits& limits, const std::string& ctx) {
  if (!o.is_object()) throw Error(ctx + " is not an object");
  RawEntry r;
  r.name = get_string(o, "name", ctx);
  r.type = get_string(o, "type", ctx);
  r.link_name = get_string(o, "linkName", ctx);
  r.mode = get_int(o, "mode", ctx);
  r.size = get_int(o, "size", ctx);
  r.uid = get_int(o, "uid", ctx);
  r.gid = get_int(o, "gid", ctx);
  r.dev_major = get_int(o, "devMajor", ctx);
  r.dev_minor = get_int(o, "devMinor", ctx);
  r.digest = get_string(o, "digest", ctx);
  r.offset = get_int(o, "offset", ctx);
  r.end_offset = get_int(o, "endOffset", ctx);
  r.inner_offset = get_int(o, "innerOffset", ctx);
  r.chunk_offset = get_int(o, "chunkOffset", ctx);
  r.chunk_size = get_int(o, "chunkSize", ctx);
  r.chunk_digest = get_string(o, "chunkDigest", ctx);
  std::string modtime = get_string(o, "modtime", ctx);
  if (!modtime.empty() && !parse_rfc3339(modtime, r.mtime))
    throw Error(ctx + ": bad modtime '" + shown(modtime) + "'");
  if (auto it = o.find("xattrs"); it != o.end() && !it->is_null()) {
    if (!it->is_object()) throw Error(ctx + ": 'xattrs' is not an object");
    if (it->size() > limits.max_xattrs) throw Error(ctx + ": too many xattrs");
    for (const auto& [k, v] : it->items()) {
      if (!v.is_string()) throw Error(ctx + ": xattr '" + shown(k) + "' is not a string");
      std::string value;
      if (!decode_base64(v.get_ref<const std::string&>(), value))
        throw Error(ctx + ": xattr '" + shown(k) + "' is not base64");
      r.xattrs.emplace_back(k, std::move(value));
    }
  }
  return r;
}

int digits(std::string_view s, size_t pos, size_t n) {
  if (pos + n > s.size()) return -1;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

EntryType entry_type(const std::string& t, const std::string& ctx) {
  if (t == "dir") return EntryType::Dir;
  if (t == "reg") return EntryType::Reg;
  if (t == "symlink") return EntryType::Symlink;
  if (t == "hardlink") return EntryType::Hardlink;
  if (t == "char") return EntryType::Char;
  if (t == "block") return EntryType::Block;
  if (t == "fifo") return EntryType::Fifo;
  throw Error(ctx + ": unknown type '" + shown(t) + "'");
}

// The unpacker's rule plus what a TOC can add: NUL bytes, over-long names.
std::string checked_path(std::string_view raw, const TocLimits& limits, const std::string& ctx) {
  if (raw.find('\0') != std::string_view::npos) throw Error(ctx + ": NUL in path");
  if (raw.size() > limits.max_path) throw Error(ctx + ": path too long");
  std::string out, why;
  if (!unpack::normalize_entry_path(raw, out, why))
    throw Error(ctx + ": " + why + " '" + shown(raw) + "'");
  size_t start = 0;
  while (start < out.size()) {
    size_t end = std::min(out.find('/', start), out.size());
    if (end - start > kMaxNameBytes) throw Error(ctx + ": name too long in '" + shown(raw) + "'");
    start = end + 1;
  }
  return out;
}

}  // namespace

bool parse_rfc3339(std::string_view s, struct timespec& out) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  int year = digits(s, 0, 4), mon = digits(s, 5, 2), day = digits(s, 8, 2);
  int hour = digits(s, 11, 2), min = digits(s, 14, 2), sec = digits(s, 17, 2);
  if (year < 0 || mon < 1 || mon > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 || min < 0 ||
      min > 59 || sec < 0 || sec > 60)
    return false;
  if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
    return false;
  size_t pos = 19;
  long nsec = 0;
  if (pos < s.size() && s[pos] == '.') {
    size_t start = ++pos;
    long scale = 100000000;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      nsec += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return false;
  }
  if (pos >= s.size()) return false;
  long offset = 0;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    int oh = digits(s, pos + 1, 2), om = digits(s, pos + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59 || pos + 3 >= s.size() || s[pos + 3] != ':')
      return false;
    offset = (s[pos] == '+' ? 1 : -1) * (oh * 3600L + om * 60L);
    pos += 6;
  } else {
    return false;
  }
  if (pos != s.size()) return false;
  struct tm tm = {};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  out.tv_sec = timegm(&tm) - offset;
  out.tv_nsec = nsec;
  return true;
}

bool decode_base64(std::string_view in, std::string& out) {
  out.clear();
  if (in.size() % 4 != 0) return false;
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char c = in[i + k];
      if (c == '=' && i + 4 == in.size() && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad > 0) return false;
      v[k] = base64_value(c);
      if (v[k] < 0) return false;
    }
    uint32_t bits = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out.push_back(static_cast<char>(bits >> 16));
    if (pad < 2) out.push_back(static_cast<char>((bits >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(bits & 0xff));
  }
  return true;
}

std::vector<RawEntry> read_toc_json(std::string_view text, const TocLimits& limits,
                                    const std::string& what) {
  if (text.size() > limits.max_uncompressed) throw Error(what + ": TOC is too large");
  json doc;
  try {
    json::parser_callback_t depth_cap = [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxDepth) throw Error("nesting too deep");
      return true;
    };
    doc = json::parse(text.begin(), text.end(), depth_cap);
  } catch (const json::exception& e) {
    throw Error(what + ": TOC is not valid JSON: " + e.what());
  } catch (const Error& e) {
    throw Error(what + ": TOC JSON: " + e.line());
  }
  if (!doc.is_object()) throw Error(what + ": TOC is not a JSON object");
  auto version = doc.find("version");
  if (version == doc.end() || !version->is_number_integer() || version->get<int64_t>() != 1)
    throw Error(what + ": TOC version is not 1");
  auto entries = doc.find("entries");
  if (entries == doc.end() || !entries->is_array())
    throw Error(what + ": TOC has no 'entries' array");
  if (entries->size() > limits.max_entries)
    throw Error(what + ": TOC has " + std::to_string(entries->size()) + " entries (at most " +
                std::to_string(limits.max_entries) + ")");
  std::vector<RawEntry> out;
  out.reserve(entries->size());
  for (size_t i = 0; i < entries->size(); ++i)
    out.push_back(read_entry((*entries)[i], limits, what + ": entry " + std::to_string(i)));
  return out;
}

void fill_entry(Entry& e, const RawEntry& r, const TocLimits& limits, const std::string& what) {
  std::string ctx = what + ": entry '" + shown(r.name) + "'";
  e.path = checked_path(r.name, limits, ctx);
  e.type = entry_type(r.type, ctx);
  if (r.mode > 0xffffffffll || r.uid > 0xfffffffell || r.gid > 0xfffffffell ||
      r.dev_major > 0xffffffffll || r.dev_minor > 0xffffffffll)
    throw Error(ctx + ": mode, owner or device number out of range");
  e.mode = static_cast<uint32_t>(r.mode) & 07777;
  e.uid = static_cast<uint32_t>(r.uid);
  e.gid = static_cast<uint32_t>(r.gid);
  e.mtime = r.mtime;
  e.dev_major = static_cast<uint32_t>(r.dev_major);
  e.dev_minor = static_cast<uint32_t>(r.dev_minor);
  if (e.path.empty() && e.type != EntryType::Dir)
    throw Error(ctx + ": entry for the layer root is not a directory");
  if (e.type == EntryType::Reg) e.size = static_cast<uint64_t>(r.size);
  if (e.type == EntryType::Symlink) {
    if (r.link_name.empty() || r.link_name.find('\0') != std::string::npos ||
        r.link_name.size() > limits.max_path)
      throw Error(ctx + ": bad symlink target");
    e.link = r.link_name;
  } else if (e.type == EntryType::Hardlink) {
    e.link = checked_path(r.link_name, limits, ctx + ": hard link target");
    if (e.link.empty()) throw Error(ctx + ": hard link to the layer root");
  }
  std::unordered_set<std::string> names;
  for (const auto& [name, value] : r.xattrs) {
    if (name.empty() || name.size() > kMaxNameBytes || name.find('\0') != std::string::npos)
      throw Error(ctx + ": bad xattr name '" + shown(name) + "'");
    if (value.size() > limits.max_xattr_value)
      throw Error(ctx + ": xattr '" + shown(name) + "' is too large");
    if (!names.insert(name).second) throw Error(ctx + ": duplicate xattr '" + shown(name) + "'");
    e.xattrs.emplace_back(name, value);
  }
  std::sort(e.xattrs.begin(), e.xattrs.end());
}

void add_first_chunk(Entry& e, const RawEntry& r, const std::string& what) {
  if (!r.digest.empty()) e.digest = Digest::parse(r.digest);
  if (r.chunk_offset != 0) throw Error(what + ": '" + e.path + "': first chunk not at 0");
  Chunk c;
  c.blob_offset = static_cast<uint64_t>(r.offset);
  c.size = r.chunk_size > 0 && static_cast<uint64_t>(r.chunk_size) < e.size
               ? static_cast<uint64_t>(r.chunk_size)
               : e.size;
  if (!r.chunk_digest.empty()) c.digest = Digest::parse(r.chunk_digest);
  e.chunks.push_back(std::move(c));
}

Chunk& add_next_chunk(Toc& toc, const RawEntry& r, const std::string& what) {
  if (toc.entries.empty() || toc.entries.back().type != EntryType::Reg ||
      toc.entries.back().chunks.empty())
    throw Error(what + ": chunk entry without a regular file before it");
  Entry& f = toc.entries.back();
  uint64_t off = static_cast<uint64_t>(r.chunk_offset);
  if (off >= f.size) throw Error(what + ": '" + f.path + "': chunk offset past the file's end");
  Chunk c;
  c.blob_offset = static_cast<uint64_t>(r.offset);
  c.file_offset = off;
  c.size = r.chunk_size > 0 ? static_cast<uint64_t>(r.chunk_size) : f.size - off;
  if (!r.chunk_digest.empty()) c.digest = Digest::parse(r.chunk_digest);
  f.chunks.push_back(std::move(c));
  return f.chunks.back();
}

void check_toc(Toc& toc, const TocLimits& limits, const std::string& what) {
  toc.by_path.clear();
  toc.by_path.reserve(toc.entries.size());
  for (size_t i = 0; i < toc.entries.size(); ++i) {
    Entry& e = toc.entries[i];
    std::string ctx = what + ": entry '" + shown(e.path) + "'";
    if (!toc.by_path.emplace(e.path, i).second) throw Error(ctx + ": duplicate path");
    if (e.type == EntryType::Hardlink) {
      auto t = toc.by_path.find(e.link);
      if (t == toc.by_path.end() || toc.entries[t->second].type != EntryType::Reg)
        throw Error(ctx + ": hard link to '" + shown(e.link) + "', not an earlier regular file");
    }
    if (e.type != EntryType::Reg) {
      if (!e.chunks.empty()) throw Error(ctx + ": content on a non-regular entry");
      continue;
    }
    if (e.size == 0) {
      if (!e.chunks.empty()) throw Error(ctx + ": chunks on an empty file");
      continue;
    }
    if (!e.digest) throw Error(ctx + ": no content digest");
    if (e.chunks.empty()) throw Error(ctx + ": no content offset");
    if (e.chunks.size() > limits.max_chunks_per_file) throw Error(ctx + ": too many chunks");
    uint64_t next = 0;
    for (const Chunk& c : e.chunks) {
      if (c.file_offset != next || c.size == 0 || c.size > e.size - next)
        throw Error(ctx + ": chunks do not tile the file's " + std::to_string(e.size) + " bytes");
      if (c.blob_offset >= c.blob_end || c.blob_end > toc.payload_end)
        throw Error(ctx + ": content at blob bytes " + std::to_string(c.blob_offset) + "-" +
                    std::to_string(c.blob_end) + " is outside the payload (" +
                    std::to_string(toc.payload_end) + " bytes)");
      next += c.size;
    }
    if (next != e.size)
      throw Error(ctx + ": chunks cover " + std::to_string(next) + " of " + std::to_string(e.size) +
                  " bytes");
  }
}

}  // namespace layer::lazy
