/**
 * The admin routes' controls over admission and the health pings: draining
 * is one-way, so an /enable during the drain must not announce the invoker.
 */
import t from 'tap';
import { admissionControls, InvokerAdmission } from '../../../invoker/invocation/admission.js';

t.test('admin controls: /enable during the drain does not announce the invoker again', async (t) => {
  const announced: string[] = [];
  const announcer = {
    enable: () => void announced.push('enable'),
    disable: async () => void announced.push('disable'),
  };
  const admission = new InvokerAdmission(1024, () => 0);
  const controls = admissionControls(admission, announcer);
  controls.disable();
  t.equal(controls.isEnabled(), false);
  controls.enable();
  t.equal(controls.isEnabled(), true);
  t.same(announced, ['disable', 'enable']);
  admission.startDraining();
  controls.enable();
  t.equal(admission.accepting(), false, 'still draining');
  t.same(announced, ['disable', 'enable'], 'no enabled announcement while draining');
  // Without Kafka there is nothing to announce; admission still follows.
  const alone = admissionControls(new InvokerAdmission(1024, () => 0), undefined);
  alone.disable();
  t.equal(alone.isEnabled(), false);
});
