// Evaluates action source. It lives alone in this file so that a direct eval
// sees only these parameters (plus globals), never the proxy's own variables,
// and it is deliberately not strict: upstream evaluates action code in sloppy
// mode, and strictness would be inherited by the eval.
module.exports = function evaluate(require, module, exports, __filename, __dirname, __ow_source) {
  return eval(__ow_source);
};
