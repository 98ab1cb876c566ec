// tfasc device runner: the bundle's tfasc_model.cc driven from host files through semihosting.
//
// Reads tfasc_in.bin (the host's working directory): a header of four little-endian int32
// {magic 'TFIN', mode, records, record_bytes}, then the records. Writes tfasc_out.bin:
//   mode 0 (int8 model inputs, record = one input tensor): the output tensor of each record;
//   mode 1 (int16 PCM clips, record = one clip): per clip the int8 model inputs the bundle's front end
//     made (kTfascModelInputs x kTfascInputBytes), the int8 outputs (kTfascModelInputs x
//     kTfascOutputBytes), the label (int32) and the kNumClasses float probabilities.
// Prints "tfasc-arena N" (tensor-arena bytes in use) to stdout and exits 0, or prints "tfasc-error ..."
// and exits non-zero. tfasc_mark() brackets each phase for the instruction-counting QEMU plugin:
// mode 0: before and after each invoke; mode 1: before the front end, before the model, after the model.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_config.h"
#include "tfasc_model.h"

extern "C" void tfasc_mark(void) __attribute__((noinline, used));
extern "C" void tfasc_mark(void) { __asm volatile("" ::: "memory"); }

static int Fail(const char* what) {
  printf("tfasc-error %s\n", what);
  return 2;
}

int main(void) {
  FILE* in = fopen("tfasc_in.bin", "rb");
  if (in == NULL) return Fail("cannot open tfasc_in.bin");
  int32_t header[4];
  if (fread(header, sizeof(int32_t), 4, in) != 4 || header[0] != 0x4e494654) return Fail("bad tfasc_in.bin header");
  const int32_t mode = header[1], records = header[2], record_bytes = header[3];
  FILE* out = fopen("tfasc_out.bin", "wb");
  if (out == NULL) return Fail("cannot open tfasc_out.bin");
  if (TfascModelSetup() != kTfLiteOk) return Fail("interpreter setup (AllocateTensors) failed");
  uint8_t* record = (uint8_t*)malloc(record_bytes);
  if (record == NULL) return Fail("no memory for one record");
  if (mode == 0 && record_bytes != kTfascInputBytes) return Fail("record size is not the input tensor's");
  static int8_t outputs[kTfascModelInputs * kTfascOutputBytes];
  for (int32_t r = 0; r < records; ++r) {
    if (fread(record, 1, record_bytes, in) != (size_t)record_bytes) return Fail("short read");
    if (mode == 0) {
      tfasc_mark();
      if (TfascModelRun((const int8_t*)record, outputs) != kTfLiteOk) return Fail("invoke failed");
      tfasc_mark();
      fwrite(outputs, 1, kTfascOutputBytes, out);
#ifdef TFASC_HAS_PCM_PATH
    } else if (mode == 1) {
      if (record_bytes != kTfascClipPcmValues * (int32_t)sizeof(int16_t)) return Fail("record size is not one clip");
      static int8_t inputs[kTfascModelInputs * kTfascInputBytes];
      float probabilities[kNumClasses];
      tfasc_mark();
      const int count = TfascPcmToInputs((const int16_t*)record, inputs);
      if (count <= 0) return Fail("front end failed");
      tfasc_mark();
      for (int i = 0; i < count; ++i)
        if (TfascModelRun(inputs + i * kTfascInputBytes, outputs + i * kTfascOutputBytes) != kTfLiteOk)
          return Fail("invoke failed");
      const int32_t label = TfascClassifyOutputs(outputs, count, probabilities);
      tfasc_mark();
      fwrite(inputs, 1, kTfascModelInputs * kTfascInputBytes, out);
      fwrite(outputs, 1, kTfascModelInputs * kTfascOutputBytes, out);
      fwrite(&label, sizeof(label), 1, out);
      fwrite(probabilities, sizeof(float), kNumClasses, out);
#endif
    } else {
      return Fail("unknown mode");
    }
  }
  fclose(out);
  fclose(in);
  printf("tfasc-arena %u\n", (unsigned)TfascArenaUsedBytes());
  return 0;
}
