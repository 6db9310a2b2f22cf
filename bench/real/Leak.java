// A JVM service allocating 40 MiB/s of short-lived objects; with "leak" it also keeps 4 MiB/s of them
// (a cache with no eviction).
import java.util.ArrayList;
import java.util.List;

public class Leak {
    public static void main(String[] args) throws Exception {
        boolean leak = args.length > 0 && args[0].equals("leak");
        List<byte[]> kept = new ArrayList<>();
        while (true) {
            for (int i = 0; i < 40; i++) {
                byte[] block = new byte[100 * 1024];
                block[0] = 1;
                if (leak && i < 4) kept.add(block);
            }
            Thread.sleep(100);
        }
    }
}
