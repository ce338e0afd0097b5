#include "registry/challenge.hpp"

#include <cctype>

namespace layer::registry {

namespace {

bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}
  bool done() { return skip_ws(), i_ >= s_.size(); }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
  }
  bool eat(char c) {
    skip_ws();
    if (i_ < s_.size() && s_[i_] == c) return ++i_, true;
    return false;
  }
  char peek() { return skip_ws(), i_ < s_.size() ? s_[i_] : '\0'; }
  std::string token() {
    skip_ws();
    size_t b = i_;
    while (i_ < s_.size() && is_tchar(s_[i_])) ++i_;
    return std::string(s_.substr(b, i_ - b));
  }
  // token68 after a scheme: token chars plus '/' and trailing '='.
  std::string token68() {
    skip_ws();
    size_t b = i_;
    while (i_ < s_.size() && (is_tchar(s_[i_]) || s_[i_] == '/')) ++i_;
    while (i_ < s_.size() && s_[i_] == '=') ++i_;
    return std::string(s_.substr(b, i_ - b));
  }
  bool quoted(std::string& out) {
    skip_ws();
    if (i_ >= s_.size() || s_[i_] != '"') return false;
    ++i_;
    while (i_ < s_.size() && s_[i_] != '"') {
      if (s_[i_] == '\\' && i_ + 1 < s_.size()) ++i_;
      out += s_[i_++];
    }
    if (i_ >= s_.size()) return false;  // unterminated
    ++i_;
    return true;
  }
  size_t pos() const { return i_; }
  void seek(size_t p) { i_ = p; }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

std::vector<Challenge> Challenge::parse(std::string_view header) {
  std::vector<Challenge> out;
  Cursor c(header);
  while (!c.done()) {
    while (c.eat(',')) {
    }
    if (c.done()) break;
    std::string scheme = c.token();
    if (scheme.empty()) break;
    Challenge ch;
    ch.scheme = lower(scheme);
    // Parameters until the next scheme (a token not followed by '=').
    while (!c.done()) {
      size_t mark = c.pos();
      std::string name = c.token();
      if (name.empty()) {
        if (c.eat(',')) continue;
        c.seek(c.pos());
        break;
      }
      if (!c.eat('=')) {  // the next challenge's scheme
        c.seek(mark);
        break;
      }
      if (c.peek() == '=' || c.peek() == ',' || c.done()) {  // token68 ("abc==")
        c.seek(mark);
        ch.params[""] = c.token68();
        c.eat(',');
        continue;
      }
      std::string value;
      if (c.peek() == '"') {
        if (!c.quoted(value)) {
          out.push_back(std::move(ch));
          return out;
        }
      } else {
        value = c.token();
      }
      ch.params[lower(name)] = value;
      if (!c.eat(',')) {
        if (!c.done()) {  // garbage after a value: stop here
          out.push_back(std::move(ch));
          return out;
        }
      }
    }
    out.push_back(std::move(ch));
  }
  return out;
}

}  // namespace layer::registry
