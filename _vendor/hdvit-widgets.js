// Loaded before embed-amd.js on pages with widgets (see _config.yml, nb_ipywidgets_js).
(function () {
  // 1. embed-amd.js loads its icon fonts relative to the RequireJS path of the module that uses
  //    them ("@jupyter-widgets/html-manager/dist/...", "@jupyter-widgets/controls", ... under the
  //    page's folder): map those to this folder, where tools/vendor_js.sh put the fonts.
  var base = document.currentScript.src.replace(/\/[^/]*$/, "");
  if (window.require && window.require.config) {
    window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": base, "@jupyter-widgets": base } });
  }
  // 2. html-manager typesets widget labels with MathJax 2's MathJax.Hub.Queue; the site runs
  //    MathJax 3 (deferred, so loaded before DOMContentLoaded): give it a small Hub shim.
  document.addEventListener("DOMContentLoaded", function () {
    var mj = window.MathJax;
    if (mj && !mj.Hub) {
      mj.Hub = {
        Queue: function (job) {
          var el = job && job[2];
          if (el && mj.typesetPromise) {
            (mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve())
              .then(function () { return mj.typesetPromise([el]); })
              .catch(function (err) { console.warn("MathJax typeset of a widget label failed", err); });
          }
        },
      };
    }
  });
})();
