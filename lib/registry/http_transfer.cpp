#include "registry/http_transfer.hpp"

#include <algorithm>
#include <cstring>

namespace layer::registry {

namespace {

constexpr long kBufferSize = 256 << 10;  // curl's receive buffer
constexpr size_t kHighWater = 4 << 20;   // pause the transfer above this many unread bytes
constexpr long kConnectTimeoutSec = 30;
constexpr long kStallSeconds = 60;  // < 1 byte/s for this long: the transfer fails

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r' || s[e - 1] == '\n'))
    --e;
  return std::string(s.substr(b, e - b));
}

}  // namespace

void HttpHeaders::add(std::string name, std::string value) {
  fields_.emplace_back(lower(std::move(name)), std::move(value));
}

std::optional<std::string> HttpHeaders::get(std::string_view name) const {
  std::string want = lower(std::string(name));
  for (auto it = fields_.rbegin(); it != fields_.rend(); ++it)
    if (it->first == want) return it->second;
  return std::nullopt;
}

std::vector<std::string> HttpHeaders::all(std::string_view name) const {
  std::string want = lower(std::string(name));
  std::vector<std::string> out;
  for (const auto& [n, v] : fields_)
    if (n == want) out.push_back(v);
  return out;
}

HttpTransfer::HttpTransfer(HttpClient& client, std::unique_ptr<CurlHandles> h,
                           const HttpRequest& req)
    : client_(client), h_(std::move(h)), url_(req.url) {
  CURL* e = h_->easy;
  const TlsConfig& tls = client.tls();
  curl_easy_setopt(e, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  if (req.method == "HEAD") curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  const bool upload = req.method == "PUT" || req.method == "POST" || req.method == "PATCH";
  if (upload) {
    upload_ = req.body ? req.body : std::make_shared<StringBody>(std::string());
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    if (req.method != "PUT") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(upload_->size()));
    curl_easy_setopt(e, CURLOPT_READFUNCTION, &HttpTransfer::on_read);
    curl_easy_setopt(e, CURLOPT_READDATA, this);
  }
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);  // redirects are ours: see RegistryClient
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, kConnectTimeoutSec);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, kStallSeconds);
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, kBufferSize);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "layerctl/0.1");
  curl_easy_setopt(e, CURLOPT_SHARE, client.share_);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf_);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &HttpTransfer::on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, this);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &HttpTransfer::on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, this);
  if (!tls.verify) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!tls.ca_pem.empty()) {
    curl_blob blob{const_cast<char*>(tls.ca_pem.data()), tls.ca_pem.size(), CURL_BLOB_NOCOPY};
    curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
  }
  if (!tls.client_cert.empty()) {
    curl_easy_setopt(e, CURLOPT_SSLCERT, tls.client_cert.c_str());
    curl_easy_setopt(e, CURLOPT_SSLKEY, tls.client_key.c_str());
  }
  curl_slist* list = nullptr;
  auto append = [&](const std::string& line) {
    curl_slist* next = curl_slist_append(list, line.c_str());
    if (!next) {
      curl_slist_free_all(list);
      throw Error("curl_slist_append failed");
    }
    list = next;
  };
  for (const auto& hdr : req.headers) append(hdr);
  if (upload) append("Expect:");  // no 100-continue round trip
  if (!req.authorization.empty()) append("Authorization: " + req.authorization);
  header_list_.reset(list);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, list);
  if (req.range_from >= 0) {
    std::string range = std::to_string(req.range_from) + "-";
    if (req.range_to >= req.range_from) range += std::to_string(req.range_to);
    curl_easy_setopt(e, CURLOPT_RANGE, range.c_str());  // curl copies it
  }
  if (CURLMcode mc = curl_multi_add_handle(h_->multi, e); mc != CURLM_OK)
    throw Error(std::string("curl_multi_add_handle: ") + curl_multi_strerror(mc));
}

HttpTransfer::~HttpTransfer() {
  curl_multi_remove_handle(h_->multi, h_->easy);
  // A transfer abandoned midway leaves its connection half-read; curl
  // closes such a connection rather than reusing it.
  client_.give_back(std::move(h_));
}

size_t HttpTransfer::on_header(char* data, size_t size, size_t n, void* self) {
  auto* t = static_cast<HttpTransfer*>(self);
  std::string_view line(data, size * n);
  if (line.substr(0, 5) == "HTTP/") {  // a new response: 1xx, or the final one
    t->headers_.clear();
    t->headers_done_ = false;
    auto sp = line.find(' ');
    t->status_ =
        sp == std::string_view::npos ? 0 : std::atol(std::string(line.substr(sp + 1, 3)).c_str());
  } else if (line == "\r\n" || line == "\n") {
    if (t->status_ >= 200) t->headers_done_ = true;
  } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
    t->headers_.add(trim(line.substr(0, colon)), trim(line.substr(colon + 1)));
  }
  return size * n;
}

size_t HttpTransfer::on_read(char* data, size_t size, size_t n, void* self) {
  auto* t = static_cast<HttpTransfer*>(self);
  try {
    return t->upload_->read(data, size * n);
  } catch (...) {
    t->upload_error_ = std::current_exception();
    return CURL_READFUNC_ABORT;
  }
}

size_t HttpTransfer::on_body(char* data, size_t size, size_t n, void* self) {
  auto* t = static_cast<HttpTransfer*>(self);
  if (t->available() > kHighWater) {
    t->paused_ = true;
    return CURL_WRITEFUNC_PAUSE;
  }
  if (t->pos_ > 0 && t->pos_ == t->buf_.size()) {
    t->buf_.clear();
    t->pos_ = 0;
  } else if (t->pos_ > (1 << 20)) {
    t->buf_.erase(t->buf_.begin(), t->buf_.begin() + static_cast<long>(t->pos_));
    t->pos_ = 0;
  }
  t->headers_done_ = true;
  t->buf_.insert(t->buf_.end(), data, data + size * n);
  return size * n;
}

void HttpTransfer::check_done() {
  int left = 0;
  while (CURLMsg* m = curl_multi_info_read(h_->multi, &left)) {
    if (m->msg == CURLMSG_DONE && m->easy_handle == h_->easy) {
      done_ = true;
      result_ = m->data.result;
      long code = 0;
      curl_easy_getinfo(h_->easy, CURLINFO_RESPONSE_CODE, &code);
      if (code) status_ = code;
    }
  }
}

void HttpTransfer::drive() {
  int running = 0;
  size_t before = available();
  bool had_headers = headers_done_;
  CURLMcode mc = curl_multi_perform(h_->multi, &running);
  if (mc != CURLM_OK)
    throw TransportError(TransportError::Kind::Other, 0,
                         std::string("curl_multi_perform: ") + curl_multi_strerror(mc));
  check_done();
  if (done_ || available() != before || headers_done_ != had_headers) return;
  curl_multi_poll(h_->multi, nullptr, 0, 1000, nullptr);
}

void HttpTransfer::throw_failure() const {
  if (upload_error_) std::rethrow_exception(upload_error_);
  std::string msg = errbuf_[0] ? std::string(errbuf_) : curl_easy_strerror(result_);
  long os_errno = 0;
  curl_easy_getinfo(h_->easy, CURLINFO_OS_ERRNO, &os_errno);
  throw TransportError(TransportError::classify(result_), static_cast<int>(result_), msg,
                       static_cast<int>(os_errno));
}

void HttpTransfer::wait_headers() {
  while (!headers_done_ && !done_) drive();
  if (done_ && result_ != CURLE_OK && !headers_done_) throw_failure();
  if (done_ && result_ == CURLE_OK) headers_done_ = true;
}

std::string HttpTransfer::redirect_url() const {
  char* target = nullptr;
  if (curl_easy_getinfo(h_->easy, CURLINFO_REDIRECT_URL, &target) == CURLE_OK && target)
    return target;
  return {};
}

size_t HttpTransfer::read(void* buf, size_t n) {
  if (n == 0) return 0;
  while (available() == 0) {
    if (paused_) {
      paused_ = false;
      curl_easy_pause(h_->easy, CURLPAUSE_CONT);
      continue;
    }
    if (done_) {
      if (result_ != CURLE_OK) throw_failure();
      return 0;
    }
    drive();
  }
  size_t k = std::min(n, available());
  std::memcpy(buf, buf_.data() + pos_, k);
  pos_ += k;
  return k;
}

std::string HttpTransfer::read_all(size_t max) {
  std::string out;
  char chunk[64 << 10];
  while (size_t k = read(chunk, sizeof chunk)) {
    if (out.size() + k > max)
      throw Error(url_ + ": response longer than " + std::to_string(max) + " bytes");
    out.append(chunk, k);
  }
  return out;
}

}  // namespace layer::registry
