// After a step-up (a code, a passkey, or the company's IdP): send the interrupted form post
// on. requestSubmit() fires the submit event, so static/js/device.js signs this post for
// its own URL when device binding is on.
(function () {
  "use strict";
  var form = document.querySelector("form[data-step-up-continue]");
  if (form) form.requestSubmit();
})();
